"""Reference side of the merge benchmark (PEFT merge_and_unload, timed inside Python).

usage: make <dir> <size: quick|full>   → <dir>/base_f32, <dir>/base_bf16 (HF folders), <dir>/adapter (PEFT, r=16 on
                                          q/k/v/o and gate/up/down); prints JSON with sizes
       time <base> <adapter> <out> <threads>  → loads base, attaches the adapter, merge_and_unload, save_pretrained;
                                          prints JSON {load_s, merge_s, save_s, total_s}
"""
import json
import sys
import time
import warnings

import torch

warnings.simplefilter("ignore")

SIZES = {
    # ~270 MB F32: hidden 1024, 4 layers.
    "quick": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=4, num_attention_heads=16, num_key_value_heads=16, vocab_size=8000),
    # ~1.76 GB F32: hidden 2048, 6 layers.
    "full": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=6, num_attention_heads=16, num_key_value_heads=16, vocab_size=32000),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make(root, size):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(max_position_embeddings=256, tie_word_embeddings=False, **SIZES[size])
    torch.manual_seed(0)
    with torch.no_grad():
        model = LlamaForCausalLM(cfg)
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.save_pretrained(f"{root}/base_f32", safe_serialization=True)
    model.to(torch.bfloat16).save_pretrained(f"{root}/base_bf16", safe_serialization=True)
    model = model.to(torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in sorted(peft_model.named_parameters()):
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    peft_model.save_pretrained(f"{root}/adapter")
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"params": n, "f32_bytes": 4 * n}))


def time_merge(base, adapter, out, threads):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if base.endswith("bf16") else torch.float32
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    model = PeftModel.from_pretrained(model, adapter)
    t1 = time.perf_counter()
    merged = model.merge_and_unload()
    t2 = time.perf_counter()
    merged.save_pretrained(out, safe_serialization=True)
    t3 = time.perf_counter()
    print(json.dumps({"load_s": t1 - t0, "merge_s": t2 - t1, "save_s": t3 - t2, "total_s": t3 - t0, "threads": torch.get_num_threads()}))


if True:  # run with python -c
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    else:
        time_merge(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
