"""Training batches as the reference side builds them, independently of loraport's TypeScript batching:
right padding with id 0, attention mask 0 and label -100 (the ignore index), as the trainer's contract says."""

from __future__ import annotations

import torch


def pad_examples(examples: list[dict], task: str) -> dict[str, torch.Tensor]:
    """`examples` ({input_ids, attention_mask?, labels?}) as one padded batch for a transformers model."""
    t = max(len(e["input_ids"]) for e in examples)
    ids = torch.zeros(len(examples), t, dtype=torch.long)
    mask = torch.zeros(len(examples), t, dtype=torch.long)
    labels = torch.full((len(examples), t), -100, dtype=torch.long) if task == "causal-lm" else torch.zeros(len(examples), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        m = torch.tensor(e.get("attention_mask", [1] * n))
        mask[i, :n] = m
        if task == "causal-lm":
            labels[i, :n] = torch.tensor(e["labels"]) if "labels" in e else torch.where(m == 1, ids[i, :n], torch.tensor(-100))
        else:
            labels[i] = e["labels"]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
