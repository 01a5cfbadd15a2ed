"""Serving bench fixture: a Llama-shaped model (random weights; head size 64, which vLLM's CPU build needs), a byte-level
BPE tokenizer, and 16 PEFT adapters (r 8 on q/v, different seeds), saved as folders. argv: <work dir> <layers>
→ one JSON line."""

import copy
import json
import sys
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from loraport_sidecar.reference import tiny_models
from loraport_sidecar.reference.tiny_tokenizer import train_byte_bpe

work, layers = Path(sys.argv[1]), int(sys.argv[2])
V = 320
base = tiny_models.llama(hidden_size=512, num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=2, intermediate_size=1408, vocab_size=V)
base.config.max_position_embeddings = 512
base.config.eos_token_id = base.generation_config.eos_token_id = V - 1
tiny_models.save(base, str(work / "base"))
base.generation_config.save_pretrained(str(work / "base"))
train_byte_bpe(work / "base", V)
adapters = []
for i in range(16):
    torch.manual_seed(100 + i)
    pm = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    pm.save_pretrained(str(work / f"a{i}"))
    adapters.append(str(work / f"a{i}"))
print(json.dumps({"base": str(work / "base"), "adapters": adapters, "vocab": V}))
