"""PyTorch side of the training benchmark: eager autograd + torch.optim.AdamW step time on the same model, LoRA
init, batch shape and thread count as loraport's run.

usage: train_reference.py SPEC.json → one JSON line {"ms": [per-step ms…], "params": N, "lora_params": M}
SPEC: {builtin, builtin_config, adapter, batch, seq, steps, warmup, threads, lr}
"""

import json
import sys
import time

import torch
from peft import PeftModel

from loraport_sidecar.reference import tiny_models


def main():
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(spec["threads"])
    base = tiny_models.build(spec["builtin"], **spec["builtin_config"])  # transformers' default attention (SDPA)
    n_base = sum(p.numel() for p in base.parameters())
    model = PeftModel.from_pretrained(base, spec["adapter"], is_trainable=True).eval()  # eval: no dropout, as the graph
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec["lr"], weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (spec["batch"], spec["seq"]), generator=gen)
    mask = torch.ones_like(ids)
    times = []
    for i in range(spec["warmup"] + spec["steps"]):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
        loss.backward()
        opt.step()
        if i >= spec["warmup"]:
            times.append((time.perf_counter() - t0) * 1000)
    print(json.dumps({"ms": times, "params": n_base, "lora_params": sum(p.numel() for p in params), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
