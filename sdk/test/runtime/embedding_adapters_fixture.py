"""Fixtures for embedding-adapters.test.ts, in one Python process: per model a tiny base, one adapter-inputs export
with the embedding among its targets, PEFT adapters with LoRA on the embedding (saved with the whole base embedding,
save_embedding_layers="auto") and with trainable tokens, and the PyTorch + PEFT references: logits for fixed ids and
transformers + PEFT greedy generate.

argv: <out root> <json spec>. Prints one JSON document (paths, references).
"""
import json
import sys
from pathlib import Path

import jsonschema
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from loraport_sidecar.export.onnx_export import export_onnx
from loraport_sidecar.reference import tiny_models, zoo

root = Path(sys.argv[1])
spec = json.loads(sys.argv[2])
# Run with `python -c` from the test (no __file__): the schema's path comes in the spec.
SCHEMA = json.loads(Path(spec["schema"]).read_text())
ids = torch.tensor(spec["ids"])
prompts = [torch.tensor([p]) for p in spec["prompts"]]


def logits(model):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.reshape(-1).tolist()


def greedy(model):
    """transformers + PEFT greedy generate for each prompt alone, past EOS (the runtime side ignores EOS too)."""
    model.generation_config.eos_token_id = None
    rows = []
    for p in prompts:
        with torch.no_grad():
            out = model.generate(input_ids=p, attention_mask=torch.ones_like(p), max_new_tokens=spec["newTokens"], do_sample=False, pad_token_id=0)
        rows.append(out[0, p.shape[1]:].tolist())
    return rows


out = {}
for name, s in spec["models"].items():
    fam = s["family"]
    # Zoo models (gemma: its embedding scales its output by sqrt(hidden), embed_scale) are built from the zoo's config.
    build = (lambda: zoo.build(fam)) if s.get("zoo") else (lambda: tiny_models.build(fam))
    base_dir = root / f"{name}-base"
    tiny_models.save(build(), str(base_dir))
    base = build().eval()
    entry = {"base": str(base_dir), "tied": bool(base.config.tie_word_embeddings), "baseLogits": logits(base), "baseTokens": greedy(base), "adapters": {}}
    for i, (key, a) in enumerate(s["adapters"].items()):
        torch.manual_seed(200 + i)
        cfg = LoraConfig(r=a["r"], lora_alpha=a["alpha"], target_modules=a["targets"], init_lora_weights=False,
                         fan_in_fan_out=fam == "gpt2", trainable_token_indices=a.get("tokens"))
        pm = get_peft_model(build(), cfg).eval()
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "trainable_tokens_delta" in n:
                    # Replacement rows far from the originals, so a runtime that ignored them would be caught.
                    p.copy_(torch.randn(p.shape))
        adir = root / f"{name}-{key}"
        pm.save_pretrained(str(adir), **({"save_embedding_layers": True} if a.get("saveEmbedding") else {}))
        # The reference is the adapter as PEFT loads it from disk (what the runtime reads).
        ref = PeftModel.from_pretrained(build(), str(adir)).eval()
        files = sorted(k for k in load_file(str(adir / "adapter_model.safetensors")))
        entry["adapters"][key] = {"dir": str(adir), "logits": logits(ref), "tokens": greedy(ref), "keys": files}
    if s.get("changedFrom"):
        # An adapter whose saved embedding differs from the base's (one row changed): cannot be served unmerged.
        src = root / f"{name}-{s['changedFrom']}"
        changed = root / f"{name}-changed-embedding"
        changed.mkdir()
        (changed / "adapter_config.json").write_text((src / "adapter_config.json").read_text())
        sd = load_file(str(src / "adapter_model.safetensors"))
        saved = [k for k in sd if k.endswith(".base_layer.weight")]
        assert saved, f"{src}: PEFT saved no embedding weight"
        sd[saved[0]] = sd[saved[0]].clone()
        sd[saved[0]][1] += 1.0
        save_file(sd, str(changed / "adapter_model.safetensors"), metadata={"format": "pt"})
        entry["changedEmbedding"] = str(changed)
    entry["adapterInputs"] = str(root / f"{name}-ai")
    if s.get("embedScale"):
        entry["embedScale"] = float(base.get_input_embeddings().embed_scale)
    if s.get("cli"):
        out[name] = entry  # the test exports this one with `loraport export`
        continue
    res = export_onnx(base_dir, root / f"{name}-ai", mode="adapter-inputs", targets=s["targets"])
    # The manifest with its new optional fields (tokens, kind, base_weights_sha256) is valid under the schema.
    jsonschema.validate(res.manifest, SCHEMA)
    out[name] = entry
print(json.dumps(out))
