"""The train-step exporter: its gates catch the exporter bugs, and a real export (sequence classification, through
the sidecar op) trains like torch.optim.AdamW on new batch shapes. References are computed here, in this run."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from peft import PeftModel

from loraport_sidecar.export import train_step as ts
from loraport_sidecar.export.train_checks import ExportCheckError, check_graph_ops, compare_grads
from loraport_sidecar.export.train_graph import AdamWSettings
from loraport_sidecar.reference import tiny_models
from sidecar_client import SidecarProcess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ROBERTA = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 64, "num_labels": 3}


def _one_node_model(path, op, domain="", ir=10):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    t = helper.make_tensor_value_info("t", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [])
    node = helper.make_node(op, ["x", "t"] if op == "NegativeLogLikelihoodLoss" else ["x"], ["y"], domain=domain)
    opsets = [helper.make_opsetid("", 20)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(helper.make_graph([node], "g", [x, t] if op == "NegativeLogLikelihoodLoss" else [x], [y]), opset_imports=opsets)
    model.ir_version = ir
    onnx.save(model, path)
    return path


def test_op_gate_refuses_nll_loss_training_ops_and_new_ir(tmp_path):
    with pytest.raises(ExportCheckError, match="NegativeLogLikelihoodLoss"):
        check_graph_ops(_one_node_model(str(tmp_path / "nll.onnx"), "NegativeLogLikelihoodLoss"))
    with pytest.raises(ExportCheckError, match="com.microsoft"):
        check_graph_ops(_one_node_model(str(tmp_path / "grad.onnx"), "GeluGrad", domain="com.microsoft"))
    with pytest.raises(ExportCheckError, match="IR version 14"):
        check_graph_ops(_one_node_model(str(tmp_path / "ir.onnx"), "Relu", ir=14))
    info = check_graph_ops(_one_node_model(str(tmp_path / "ok.onnx"), "Relu"))
    assert info["op_types"] == ["Relu"] and info["ir_version"] == 10


def test_export_without_nll_decomposition_is_refused_and_writes_nothing(tmp_path, monkeypatch):
    """The ×16 masked-label gradient bug: without the decomposition the graph has NegativeLogLikelihoodLoss."""
    from torch.fx.experimental.proxy_tensor import make_fx

    def trace_without_decomposition(fn, args):
        with ts.tracing_patches():
            return make_fx(fn, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*args)

    monkeypatch.setattr(ts, "trace", trace_without_decomposition)
    out = tmp_path / "artifact"
    with pytest.raises(ExportCheckError, match="NegativeLogLikelihoodLoss"):
        ts.export_train_step(str(out), builtin="gpt2", builtin_config={"n_embd": 32, "n_layer": 1, "n_head": 2, "vocab_size": 64},
                             target_modules=["c_attn"], r=2, alpha=4, log=lambda s: None)
    assert not out.exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".train-step-")] == []  # temp folder removed


@pytest.fixture(scope="module")
def seq_cls_artifact(tmp_path_factory):
    """A RoBERTa sequence-classification artifact exported through the real sidecar op (results schema-checked)."""
    out = str(tmp_path_factory.mktemp("train") / "artifact")
    sc = SidecarProcess()
    try:
        h, _ = sc.final(sc.send("exportTrainStep", {"builtin": "roberta", "builtinConfig": ROBERTA, "out": out,
                                                     "lora": {"r": 4, "alpha": 8, "targetModules": ["query", "value"]}}), timeout_ms=900_000)
    finally:
        sc.close()
    assert h["kind"] == "result", h
    return out, h["result"]


def test_seq_cls_export_manifest_and_gates(seq_cls_artifact):
    import jsonschema
    out, result = seq_cls_artifact
    assert result["task"] == "seq-cls"
    manifest = json.load(open(os.path.join(out, "loraport-train.json")))
    jsonschema.validate(manifest, json.load(open(os.path.join(ROOT, "schemas", "train-manifest.schema.json"))))
    keys = [p["key"] for p in manifest["params"]]
    assert any(".lora_A." in k for k in keys) and any(k.startswith("base_model.model.classifier.") for k in keys)  # SEQ_CLS trains the head
    for g in manifest["graphs"].values():
        assert g["ir_version"] <= 13 and "NegativeLogLikelihoodLoss" not in g["op_types"]
    worst = max(c["grad_max_rel_err"] for c in manifest["checks"]["gradient"])
    assert worst <= 1e-5 and result["gradMaxRelErr"] == worst
    assert {tuple(c["shape"]) for c in manifest["checks"]["gradient"]} == {(2, 8), (3, 13)}


def test_seq_cls_steps_match_torch_adamw_on_new_shapes(seq_cls_artifact):
    """Three train_step.onnx steps on batch shapes never seen at export vs the PEFT model + torch.optim.AdamW."""
    out, _ = seq_cls_artifact
    manifest = json.load(open(os.path.join(out, "loraport-train.json")))
    opt_cfg = manifest["optimizer"]
    base = tiny_models.roberta(**ROBERTA)
    base.set_attn_implementation("eager")
    model = PeftModel.from_pretrained(base, os.path.join(out, "initial_adapter"), is_trainable=True).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-3, betas=(opt_cfg["beta1"], opt_cfg["beta2"]), eps=opt_cfg["eps"], weight_decay=opt_cfg["weight_decay"])
    sess = ort.InferenceSession(os.path.join(out, "train_step.onnx"), providers=["CPUExecutionProvider"])
    keys = [p["key"] for p in manifest["params"]]
    p_np = [p.detach().numpy().copy() for p in params]
    m_np = [np.zeros_like(x) for x in p_np]
    v_np = [np.zeros_like(x) for x in p_np]
    gen = torch.Generator().manual_seed(5)
    for step, (b, t) in enumerate([(1, 5), (4, 17), (3, 9)]):
        ids = torch.randint(0, ROBERTA["vocab_size"], (b, t), generator=gen)
        mask = torch.ones(b, t, dtype=torch.int64)
        mask[0, t - 2:] = 0
        labels = torch.randint(0, ROBERTA["num_labels"], (b,), generator=gen)
        opt.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        feed = {**{f"p.{k}": x for k, x in zip(keys, p_np)}, **{f"m.{k}": x for k, x in zip(keys, m_np)},
                **{f"v.{k}": x for k, x in zip(keys, v_np)}, "step": np.array(step, np.float32), "lr": np.array(5e-3, np.float32),
                "input_ids": ids.numpy(), "attention_mask": mask.numpy(), "labels": labels.numpy()}
        res = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
        assert abs(float(res["loss"]) - float(loss)) <= 1e-5 * abs(float(loss))
        p_np = [res[f"new_p.{k}"] for k in keys]
        m_np = [res[f"new_m.{k}"] for k in keys]
        v_np = [res[f"new_v.{k}"] for k in keys]
        assert float(res["new_step"]) == step + 1
    diff = max(float(np.abs(a - p.detach().numpy()).max()) for a, p in zip(p_np, params))
    assert diff <= 1e-2 * 5e-3, f"params after 3 steps differ from torch.optim.AdamW by {diff}"


def test_gradient_gate_fails_when_the_graph_does_not_match_the_model(seq_cls_artifact):
    """Check the gate itself: the same graphs against a model with other weights must be refused."""
    out, _ = seq_cls_artifact
    other = tiny_models.roberta(**ROBERTA, seed=1)
    other.set_attn_implementation("eager")
    model = PeftModel.from_pretrained(other, os.path.join(out, "initial_adapter"), is_trainable=True).eval()
    names, keys, values = ts.trainable_params(model)
    for p in model.parameters():
        p.requires_grad_(False)
    art = ts.Artifact(model, names, keys, "seq-cls", AdamWSettings())
    with pytest.raises(ExportCheckError, match="gradient check failed"):
        ts.gradient_check(out, art, model, [values[n] for n in names], ROBERTA["vocab_size"], ROBERTA["num_labels"], AdamWSettings())


def test_llama_export_passes_the_gates(tmp_path):
    """Llama's SiLU MLP, RMSNorm, rotary embeddings and GQA through the exporter (silu_backward needs decomposing)."""
    out = tmp_path / "llama"
    manifest = ts.export_train_step(str(out), builtin="llama", builtin_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
                                                                                "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 64},
                                    target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"], r=2, alpha=4, log=lambda s: None)
    assert max(c["grad_max_rel_err"] for c in manifest["checks"]["gradient"]) <= 1e-5
    assert manifest["checks"]["update"]["apply_step_max_abs_err"] <= 1e-7
    assert (out / "train_step.onnx").exists() and (out / "initial_adapter" / "adapter_model.safetensors").exists()


SHORT = {"n_embd": 32, "n_layer": 1, "n_head": 2, "vocab_size": 64, "n_positions": 8}


def export_short_graph(path: str, shape: tuple[int, int], graph: str = "grad_step"):
    """One graph of a GPT-2 with n_positions=8, traced on a sample of `shape`, through the exporter's own pieces and
    its dynamic-dims gate (one graph, not the whole five-graph artifact, to keep the test short)."""
    base = tiny_models.gpt2(**SHORT)
    base.set_attn_implementation("eager")
    model = ts.make_peft_model(base, "causal-lm", None, 2, 4, ["c_attn"], 0)
    names, keys, values = ts.trainable_params(model)
    for p in model.parameters():
        p.requires_grad_(False)
    art = ts.Artifact(model, names, keys, "causal-lm", AdamWSettings(), ts.max_positions_of(base.config))
    spec = art.graphs()[graph]
    batch = ts.example_batch("causal-lm", SHORT["vocab_size"], 0, shape, seed=7, pad=False)
    ps = [values[n] for n in names]
    state = [*ps, *ts.distinct_zeros(ps), *ts.distinct_zeros(ps), torch.tensor(0.0), torch.tensor(1e-3)] if graph == "train_step" else ps
    args = [*state, batch["input_ids"], batch["attention_mask"], batch["labels"]]
    ts.export_onnx(ts.trace(spec["fn"], args), args, spec["inputs"], spec["outputs"], spec["dynamic"], path)
    from loraport_sidecar.export.train_checks import check_dynamic_batch
    check_dynamic_batch(path, ["input_ids", "attention_mask", "labels"])
    return model, [keys[n] for n in names], names, values


def test_short_context_model_exports_and_takes_full_length_rows(tmp_path):
    """A GPT-2 with n_positions=8 trained on 8-token rows was refused: the gradient check ran (3, 13) rows, past the
    context, and the trace sample sat at the context, where the tracer may prove seq == n_positions and specialise it
    (`input input_ids has fixed dims ['batch', 8]`). The sample now stays below the context, the seq dim is bounded by
    it and the check shapes are capped at it: grad_step takes 8-token and shorter rows and gives autograd's loss and
    gradients on the PEFT model."""
    shape = ts.example_shape(SHORT["n_positions"])
    assert shape == (2, 7) and ts.check_shapes(8) == ((2, 8), (3, 8)) and ts.check_shapes(None) == ts.CHECK_SHAPES
    model, keys, names, values = export_short_graph(str(tmp_path / "grad_step.onnx"), shape)
    sess = ort.InferenceSession(str(tmp_path / "grad_step.onnx"), providers=["CPUExecutionProvider"])
    ps = ts.perturbed([values[n] for n in names], seed=1234)  # B != 0, so A's gradients are not all zero
    for i, (b, t) in enumerate(((2, 8), (4, 8), (1, 3))):
        batch = ts.example_batch("causal-lm", SHORT["vocab_size"], 0, (b, t), seed=20 + i, pad=b > 1)
        want_loss, want = ts.reference_grads(model, names, ps, batch)
        out = sess.run(None, {**{f"p.{k}": p.numpy() for k, p in zip(keys, ps)}, **{k: v.numpy() for k, v in batch.items()}})
        assert abs(float(out[0]) - want_loss) <= 1e-5 * abs(want_loss), (b, t)
        assert compare_grads(keys, out[1:], want)[1] <= 1e-5, (b, t)


def test_gate_messages_say_what_to_do_without_class_paths(tmp_path):
    """Refusals reach the CLI as they are: they name the file and the fix, never a Python class path."""
    for path, op, domain, ir in ((tmp_path / "nll.onnx", "NegativeLogLikelihoodLoss", "", 10), (tmp_path / "ms.onnx", "GeluGrad", "com.microsoft", 10),
                                 (tmp_path / "ir.onnx", "Relu", "", 14)):
        with pytest.raises(ExportCheckError) as e:
            check_graph_ops(_one_node_model(str(path), op, domain=domain, ir=ir))
        msg = str(e.value)
        assert msg.startswith(path.name + ":") and "loraport_sidecar" not in msg and "Error" not in msg
        assert any(w in msg for w in ("report this", "--engine torch", "requirements.txt")), msg
    x = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", 8])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, ["batch", 8])
    fixed = helper.make_model(helper.make_graph([helper.make_node("Identity", ["input_ids"], ["y"])], "g", [x], [y]))
    onnx.save(fixed, str(tmp_path / "fixed.onnx"))
    from loraport_sidecar.export.train_checks import check_dynamic_batch
    with pytest.raises(ExportCheckError, match=r"fixed.onnx: input input_ids has fixed dims \['batch', 8\], so the graph would take only"):
        check_dynamic_batch(str(tmp_path / "fixed.onnx"), ["input_ids"])
