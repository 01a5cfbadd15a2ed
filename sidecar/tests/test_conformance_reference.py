"""The conformance reference side: real loralib and PEFT numbers written for the TS runner, and its errors."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from loraport_sidecar.conformance.errors import CaseError, ReferenceMissing
from loraport_sidecar.conformance.run_case import run_case

CASES = os.path.join(os.path.dirname(__file__), "../../conformance/cases")


def test_merged_linear_case_writes_loralib_and_peft_numbers(tmp_path):
    m = run_case(os.path.join(CASES, "merged-linear-qv.json"), str(tmp_path))
    t = load_file(str(tmp_path / m["tensors"]))
    params = m["weights"]["params"]
    assert params == ["transformer.h.0.attn.c_attn.weight", "transformer.h.1.attn.c_attn.weight"]
    for p in params:
        base, lora, peft = t[f"base/{p}"], t[f"weights/loralib.merge/{p}"], t[f"weights/peft.merge[recipe]/{p}"]
        assert not torch.equal(base, lora)  # seeded factors: a real update, not B = 0
        # The recipe conversion (rank 2r, block-structured B, alpha 2·alpha) reproduces loralib's merge exactly.
        assert torch.allclose(peft, lora, atol=1e-6, rtol=0)
        # [True, False, True]: the key block of c_attn ([in, out] layout → columns E..2E) is untouched.
        e = base.shape[0]
        assert torch.equal(lora[:, e:2 * e], base[:, e:2 * e])
    for i in range(m["forward"]["batches"]):
        un, me = t[f"forward/loralib.unmerged/batch{i}"], t[f"forward/loralib.merged/batch{i}"]
        assert un.shape == me.shape and torch.allclose(un, me, atol=1e-4)
    # Padded batch: only the 13 positions the mask keeps are written.
    assert t["forward/loralib.unmerged/batch1"].shape[0] == int(t["inputs/batch1/attention_mask"].sum())
    assert os.path.isfile(m["adapters"]["loralib"])


def test_peft_case_is_made_and_loaded_by_peft(tmp_path):
    m = run_case(os.path.join(CASES, "dora-llama.json"), str(tmp_path))
    cfg = json.load(open(os.path.join(m["adapters"]["peft"], "adapter_config.json")))
    assert cfg["use_dora"] is True
    t = load_file(str(tmp_path / m["tensors"]))
    assert len(m["weights"]["params"]) == 6  # q, v, up in 2 layers
    assert all(f"base/{p}" in t and f"weights/peft.merge/{p}" in t for p in m["weights"]["params"])


def test_missing_checkpoint_and_bad_case_are_named(tmp_path):
    with pytest.raises(ReferenceMissing, match="roberta_base_lora_mnli.bin"):
        run_case(os.path.join(CASES, "published-roberta-base-mnli.json"), str(tmp_path / "a"), reference_dir=str(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "x", "base": {"family": "gpt2"}, "adapter": {"source": "lycoris"}}))
    with pytest.raises(CaseError, match=r"bad\.json: adapter\.source"):
        run_case(str(bad), str(tmp_path / "b"))


def test_conformance_case_as_a_sidecar_op(tmp_path):
    from sidecar_client import SidecarProcess

    sc = SidecarProcess()
    try:
        header, _ = sc.call("conformanceCase", {"case": os.path.join(CASES, "conv2d-peft.json"), "out": str(tmp_path)})
        assert header["kind"] == "result", header
        manifest = header["result"]["manifest"]
        assert manifest["case_id"] == "generated/conv2d-peft"
        t = load_file(os.path.join(manifest["out"], manifest["tensors"]))
        assert set(manifest["weights"]["params"]) == {"conv1.weight", "conv2.weight"}
        assert all(f"weights/peft.merge/{p}" in t for p in manifest["weights"]["params"])
    finally:
        sc.close()
