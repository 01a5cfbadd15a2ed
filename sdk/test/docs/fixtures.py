"""The files the docs' snippets name, made by the reference implementations: path/to/hf-model (a tiny GPT-2
saved by transformers; the test adds a byte-level tokenizer), adapters/support and adapters/sales (PEFT LoRA
adapters on c_attn, saved by PEFT), my-adapter/ (a third one)."""
import os, sys
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from peft import LoraConfig, get_peft_model

work = sys.argv[1]
torch.manual_seed(0)
config = GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=128, vocab_size=257, bos_token_id=256, eos_token_id=256)
GPT2LMHeadModel(config).save_pretrained(os.path.join(work, "path/to/hf-model"))
for seed, name in ((1, "adapters/support"), (2, "adapters/sales"), (3, "my-adapter")):
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(os.path.join(work, name))
