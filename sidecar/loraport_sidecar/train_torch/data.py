"""Training data and its order, exactly as the ORT engine has them (sdk/src/training/data.ts, fit-loop.ts), so
both engines see the same micro-batches; plus the split of each global micro-batch over the ranks.

Each optimizer step takes `accumulation` global micro-batches of `batch_size` rows; rank r of N takes the r-th of
N contiguous, equal slices of every micro-batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from .errors import DataError

IGNORE_INDEX = -100
_M32 = 0xFFFFFFFF


def shuffled_order(n: int, seed: int) -> list[int]:
    """data.ts shuffledOrder: mulberry32 + Fisher–Yates, in uint32 arithmetic (JavaScript's Math.imul and >>>)."""
    s = seed & _M32

    def rand() -> float:
        nonlocal s
        s = (s + 0x6D2B79F5) & _M32
        r = ((s ^ (s >> 15)) * (1 | s)) & _M32
        r = ((r + (((r ^ (r >> 7)) * (61 | r)) & _M32)) & _M32) ^ r
        return ((r ^ (r >> 14)) & _M32) / 4294967296

    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = int(rand() * (i + 1))
        order[i], order[j] = order[j], order[i]
    return order


@dataclass(frozen=True)
class FitPlan:
    micro_per_epoch: int
    steps_per_epoch: int
    total_steps: int


def plan_fit(examples: int, batch_size: int, accumulation: int, epochs: int, max_steps: int | None) -> FitPlan:
    micro = -(-examples // batch_size)
    steps = -(-micro // accumulation)
    return FitPlan(micro, steps, max_steps if max_steps is not None else epochs * steps)


def step_micro_batches(n: int, plan: FitPlan, batch_size: int, accumulation: int, shuffle: bool, seed: int, k: int) -> tuple[int, list[list[int]]]:
    """(epoch, example indices of each global micro-batch) of the fit's k-th step (fit-loop.ts stepBatches)."""
    epoch = k // plan.steps_per_epoch
    within = k % plan.steps_per_epoch
    order = shuffled_order(n, (seed * 1_000_003 + epoch) & _M32) if shuffle else list(range(n))
    first = within * accumulation
    last = min(first + accumulation, plan.micro_per_epoch)
    return epoch, [order[mb * batch_size:(mb + 1) * batch_size] for mb in range(first, last)]


def rank_slice(rows: list[int], rank: int, world: int) -> list[int]:
    """Rank `rank`'s contiguous share of one global micro-batch (a short last batch splits as evenly as it can)."""
    base, extra = divmod(len(rows), world)
    start = rank * base + min(rank, extra)
    return rows[start:start + base + (1 if rank < extra else 0)]


def read_examples(path: str, vocab_size: int, max_positions: int | None, task: str) -> list[dict]:
    """Token-id JSONL (the TypeScript side tokenizes `text` lines before the run); checked like data.ts checkExample."""
    out: list[dict] = []
    with open(path, encoding="utf8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path} line {i}"
            try:
                ex = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg})") from None
            ids = ex.get("input_ids") if isinstance(ex, dict) else None
            if not isinstance(ids, list) or not ids or not all(isinstance(x, int) and 0 <= x < vocab_size for x in ids):
                raise DataError(f"{where}: input_ids: expected a non-empty list of token ids in [0, {vocab_size})")
            if max_positions and len(ids) > max_positions:
                raise DataError(f"{where}: input_ids: {len(ids)} tokens, the model takes at most {max_positions}")
            mask = ex.get("attention_mask")
            if mask is not None and (not isinstance(mask, list) or len(mask) != len(ids) or any(m not in (0, 1) for m in mask)):
                raise DataError(f"{where}: attention_mask: expected {len(ids)} entries of 0 or 1")
            labels = ex.get("labels")
            if task == "seq-cls":
                if not isinstance(labels, int):
                    raise DataError(f"{where}: labels: expected a class index")
            elif labels is not None and (not isinstance(labels, list) or len(labels) != len(ids)):
                raise DataError(f"{where}: labels: expected {len(ids)} entries (one per input id; -100 = not scored)")
            elif labels is None and len(ids) < 2:
                raise DataError(f"{where}: input_ids: a causal-lm example needs at least 2 tokens")
            out.append({"input_ids": ids, **({"attention_mask": mask} if mask is not None else {}), **({"labels": labels} if labels is not None else {})})
    if not out:
        raise DataError(f"{path}: no examples (the file is empty)")
    return out


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    tokens: int  # real tokens, for tokens/s
    scored: int  # labels that count in the loss: shifted targets (causal-lm) or sequences (seq-cls)


def make_batch(examples: list[dict], task: str) -> Batch:
    """data.ts makeBatch: right padding with id 0, mask 0, label -100 (the padding the reference side also uses)."""
    from ..reference.train_batches import pad_examples

    p = pad_examples(examples, task)
    labels = p["labels"]
    scored = int((labels[:, 1:] != IGNORE_INDEX).sum()) if task == "causal-lm" else len(examples)
    return Batch(p["input_ids"], p["attention_mask"], labels, int(p["attention_mask"].sum()), scored)


def empty_batch(task: str) -> Batch:
    """What a rank with no rows in a short last micro-batch runs: nothing scored, so it adds zero to the gradient
    (every rank must still take part in each backward's collectives)."""
    labels = torch.full((1, 2), IGNORE_INDEX, dtype=torch.long) if task == "causal-lm" else torch.zeros(1, dtype=torch.long)
    return Batch(torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long), labels, 0, 0)
