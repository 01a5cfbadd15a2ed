"""ORT bench fixture: a GPT-2-small-shaped model (random seeded weights), a PEFT adapter on c_attn, both exports
(adapter-inputs, merged), and PyTorch eager forward latency measured here, inside Python, at the same thread count.

argv: <work dir> <n_layer> <threads> <seq> <reps>. Prints one JSON document, then serves timing requests on stdin
(`torch N` / `peft N` → one JSON line with the best of N forwards, `quit`), so the TS side can interleave PyTorch and
ORT rounds: on a shared machine, figures taken minutes apart are not comparable.
"""
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from loraport_sidecar.export.onnx_export import export_onnx
from loraport_sidecar.reference import tiny_models

work, n_layer, threads, seq, reps = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
cfg = dict(n_embd=768, n_layer=n_layer, n_head=12, vocab_size=50257, n_positions=1024)
base = tiny_models.gpt2(**cfg)
tiny_models.save(base, str(work / "base"))
torch.manual_seed(0)
pm = get_peft_model(tiny_models.gpt2(**cfg), LoraConfig(r=16, lora_alpha=32, target_modules=["c_attn"], init_lora_weights=False, fan_in_fan_out=True)).eval()
pm.save_pretrained(str(work / "adapter"))
torch.manual_seed(1)
pm2 = get_peft_model(tiny_models.gpt2(**cfg), LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"], init_lora_weights=False, fan_in_fan_out=True)).eval()
pm2.save_pretrained(str(work / "adapter2"))

ids = torch.randint(0, 50257, (1, seq), generator=torch.Generator().manual_seed(2))
mask = torch.ones_like(ids)


def bench(model, n=None):
    with torch.inference_mode():
        for _ in range(2):
            model(input_ids=ids, attention_mask=mask)
        times = []
        for _ in range(n or reps):
            t0 = time.perf_counter()
            model(input_ids=ids, attention_mask=mask)
            times.append((time.perf_counter() - t0) * 1e3)
    return min(times)  # best of reps: the machine is shared, interference only adds time


# Merged LoRA has the base model's shapes and cost: PyTorch eager on the base stands for PyTorch merged.
base.eval()
with torch.inference_mode():
    ref = pm(input_ids=ids, attention_mask=mask).logits[0, -1].tolist()
t0 = time.perf_counter()
export_onnx(work / "base", work / "ai", mode="adapter-inputs", targets=["c_attn"])
t_export_ai = time.perf_counter() - t0
export_onnx(work / "base", work / "merged", mode="merged", adapter_dir=work / "adapter")
print(json.dumps({"ids": ids[0].tolist(), "refLastLogits": ref,
                  "exportSeconds": t_export_ai, "torchThreads": torch.get_num_threads()}), flush=True)

models = {"torch": base, "peft": pm}
for line in sys.stdin:
    cmd, *rest = line.split()
    if cmd == "quit":
        break
    n = int(rest[0]) if rest else 5
    print(json.dumps({"best": bench(models[cmd], n)}), flush=True)
