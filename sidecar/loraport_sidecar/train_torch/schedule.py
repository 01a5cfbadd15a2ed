"""The learning-rate schedules of the ORT engine (sdk/src/training/schedule.ts), which are transformers'
get_{constant,linear,cosine}_schedule_with_warmup factors times the peak learning rate."""

from __future__ import annotations

import math

KINDS = ("constant", "linear", "cosine")


def learning_rate(kind: str, warmup: int, lr: float, step: int, total_steps: int) -> float:
    """Learning rate of 0-based optimizer step `step` out of `total_steps`."""
    if step < warmup:
        return lr * step / max(1, warmup)
    if kind == "constant":
        return lr
    if kind == "linear":
        return lr * max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    if kind == "cosine":
        progress = (step - warmup) / max(1, total_steps - warmup)
        return lr * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"schedule kind {kind!r}: expected one of {list(KINDS)}")
