"""Fixtures for the runtime tests, built in one Python process: tiny bases, their ONNX exports, PEFT adapters of
different ranks, and the PyTorch + PEFT reference logits for fixed ids, with an all-ones attention mask and with a
padded one (produced here, in the same test run).

argv: <out root> <json spec>. Prints one JSON document: paths and reference logits.
"""
import json
import sys
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from loraport_sidecar.export.onnx_export import export_onnx
from loraport_sidecar.reference import tiny_models

root = Path(sys.argv[1])
spec = json.loads(sys.argv[2])
ids = torch.tensor(spec["ids"])
mask = torch.ones_like(ids)
padded_mask = torch.tensor(spec["paddedMask"])


def logits(model, attention_mask=mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=attention_mask).logits.reshape(-1).tolist()


out = {}
for name, s in spec["models"].items():
    fam = s["family"]
    base = tiny_models.build(fam)
    if s.get("f16"):
        base = base.to(torch.float16)
    base_dir = root / f"{name}-base"
    tiny_models.save(base, str(base_dir))
    ref_base = tiny_models.build(fam).to(torch.float16).to(torch.float32).eval() if s.get("f16") else tiny_models.build(fam).eval()
    entry = {"base": str(base_dir), "baseLogits": logits(ref_base), "paddedBaseLogits": logits(ref_base, padded_mask), "adapters": {}}
    for i, (r, alpha, rslora, *task) in enumerate(s["adapters"]):
        torch.manual_seed(100 + i)
        m = tiny_models.build(fam)
        if s.get("f16"):
            m = m.to(torch.float16).to(torch.float32)
        pm = get_peft_model(m, LoraConfig(r=r, lora_alpha=alpha, target_modules=s["targets"], use_rslora=rslora,
                                          init_lora_weights=False, fan_in_fan_out=fam == "gpt2",
                                          task_type=task[0] if task else None)).eval()
        if task and task[0] == "SEQ_CLS":
            # PEFT saves the classifier whole (modules_to_save); give it its own values so the head inputs matter.
            with torch.no_grad():
                for p in pm.base_model.model.classifier.modules_to_save["default"].parameters():
                    p.add_(0.05 * torch.randn(p.shape))
        adir = root / f"{name}-adapter{i}"
        pm.save_pretrained(str(adir))
        entry["adapters"][f"a{i}"] = {"dir": str(adir), "r": r, "logits": logits(pm), "paddedLogits": logits(pm, padded_mask)}
    # loraDefaults: True = also an export with LoRA input defaults, "only" = just that one, "none" = no export at all.
    if s.get("loraDefaults") not in ("only", "none"):
        export_onnx(base_dir, root / f"{name}-ai", mode="adapter-inputs", targets=s["targets"])
        entry["adapterInputs"] = str(root / f"{name}-ai")
    if s.get("loraDefaults") in (True, "only"):
        export_onnx(base_dir, root / f"{name}-ai-defaults", mode="adapter-inputs", targets=s["targets"], lora_defaults=True)
        entry["adapterInputsWithDefaults"] = str(root / f"{name}-ai-defaults")
    if s.get("merged"):
        export_onnx(base_dir, root / f"{name}-merged", mode="merged", adapter_dir=root / f"{name}-adapter0")
        entry["merged"] = str(root / f"{name}-merged")
    out[name] = entry
print(json.dumps(out))
