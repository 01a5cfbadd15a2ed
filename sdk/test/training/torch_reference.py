"""The PyTorch side of the training parity tests: the same steps with PEFT + torch.optim.AdamW.

usage: torch_reference.py SPEC.json  → prints one JSON line.
SPEC: {builtin, builtin_config, adapter (initial PEFT folder), task, micro_batches: [[example…]…], accumulation,
       lr, schedule: {kind, warmup}, betas, eps, weight_decay, trained_adapter (optional: a PEFT folder written
       by loraport), logits_batch (optional)}
Batches are padded independently of the TypeScript code (loraport_sidecar.reference.train_batches): right padding,
id 0, mask 0, label -100.
"""

import json
import sys

import torch
from peft import PeftModel
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

from loraport_sidecar.reference import tiny_models
from loraport_sidecar.reference.train_batches import pad_examples as pad


def base_model(spec):
    model = tiny_models.build(spec["builtin"], **spec.get("builtin_config", {}))
    model.set_attn_implementation("eager")
    return model.eval()


def main():
    spec = json.load(open(sys.argv[1]))
    torch.manual_seed(0)
    model = PeftModel.from_pretrained(base_model(spec), spec["adapter"], is_trainable=True).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec["lr"], betas=tuple(spec["betas"]), eps=spec["eps"], weight_decay=spec["weight_decay"])
    acc = spec["accumulation"]
    steps = len(spec["micro_batches"]) // acc
    sched_kind, warmup = spec["schedule"]["kind"], spec["schedule"].get("warmup", 0)
    if sched_kind == "linear":
        sched = get_linear_schedule_with_warmup(opt, warmup, steps)
    elif sched_kind == "cosine":
        sched = get_cosine_schedule_with_warmup(opt, warmup, steps)
    else:
        sched = get_constant_schedule_with_warmup(opt, warmup)
    losses, first_grads = [], None
    for s in range(steps):
        opt.zero_grad()
        total = 0.0
        for k in range(acc):
            batch = pad(spec["micro_batches"][s * acc + k], spec["task"])
            loss = model(**batch).loss
            (loss / acc).backward()
            total += float(loss) / acc
        if s == 0:
            first_grads = {n: p.grad.detach().flatten().tolist() for n, p in zip(names, params)}
        losses.append(total)
        opt.step()
        sched.step()
    out = {"losses": losses, "first_grads": first_grads, "names": names}
    if spec.get("trained_adapter"):
        loaded = PeftModel.from_pretrained(base_model(spec), spec["trained_adapter"]).eval()
        with torch.no_grad():
            batch = pad(spec["logits_batch"], spec["task"])
            logits = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        out["logits"] = logits.flatten().tolist()
        out["logits_shape"] = list(logits.shape)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
