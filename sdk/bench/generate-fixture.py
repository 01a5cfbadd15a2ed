"""Generation bench fixture: random-weight models of GPT-2-small and Llama shapes, each with a PEFT adapter (r 16 on
PEFT's default targets), saved as Hugging Face folders. The TS side exports them through the sidecar and times
transformers + PEFT generate there (hfGenerate) beside loraport's. argv: <work dir> <quick 0|1> → one JSON line."""

import json
import sys
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from loraport_sidecar.reference import tiny_models

work, quick = Path(sys.argv[1]), sys.argv[2] == "1"
layers = 2 if quick else None
models = {
    "gpt2-small": ("gpt2", dict(n_embd=768, n_layer=layers or 12, n_head=12, vocab_size=50257, n_positions=1024)),
    "llama-shaped": ("llama", dict(hidden_size=512, num_hidden_layers=layers or 8, num_attention_heads=8, num_key_value_heads=2,
                                   intermediate_size=1408, vocab_size=32000)),
}
out = {}
for name, (family, cfg) in models.items():
    base = tiny_models.build(family, **cfg)
    if family == "llama":
        base.config.max_position_embeddings = 2048  # room for the 1024-token context row
    base_dir = work / name / "base"
    tiny_models.save(base, str(base_dir))
    torch.manual_seed(0)
    pm = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, init_lora_weights=False, fan_in_fan_out=family == "gpt2"))
    pm.save_pretrained(str(work / name / "adapter"))
    out[name] = {"base": str(base_dir), "adapter": str(work / name / "adapter"), "maxPositions": cfg.get("n_positions", 2048)}
print(json.dumps(out))
