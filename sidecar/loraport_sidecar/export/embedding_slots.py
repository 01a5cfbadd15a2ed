"""Embedding targets of an adapter-inputs export: PEFT's embedding LoRA and trainable tokens as graph inputs.

An ``nn.Embedding`` named in ``--targets`` gets, per adapter slot (the same slots and ``lora_index`` as the
projections' tables):

- LoRA tables ``A [slots, r, vocab]`` and ``B [slots, dim, r]`` (scaling folded into B): each row's token ids pick
  columns of its slot's A (a gather), then ``@ Bᵀ`` — PEFT's ``lora.Embedding`` forward, ``embed(ids, Aᵀ) @ Bᵀ · s``;
- trainable tokens ``ids [slots, n]`` (int64, padded with -1, which matches no token) and ``rows [slots, n, dim]``:
  a row's token equal to one of its slot's ids takes that replacement row (PEFT's ``TrainableTokensLayer``, which
  writes the rows with ``index_copy``: replacement values, not deltas).

With tied word embeddings PEFT also wraps the tied LM head in a ``TrainableTokensLayer`` tied to the embedding's,
so the logits of the trainable ids use the replacement rows too (``F.linear(h, W')``): ``TiedTokensHead`` does that.
LoRA on the embedding leaves the tied head alone in PEFT's forward (the head keeps the base weight), and so here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def embed_scale(base: nn.Module) -> Any:
    """The factor some embeddings apply in their forward (Gemma's scaled embeddings); PEFT scales its LoRA output
    and the replaced rows by it as well. None for plain nn.Embedding."""
    return getattr(base, "embed_scale", None)


class EmbeddingSlot(nn.Module):
    """An embedding plus each row's LoRA delta and replaced trainable-token rows, taken from its slot."""

    def __init__(self, base: nn.Embedding, key: str, feeds: Any) -> None:
        super().__init__()
        self.base = base
        self.key = key
        self._feeds = feeds

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.base(ids)
        scale = embed_scale(self.base)
        index = self._feeds.index
        a_table, b_table = self._feeds.factors[self.key]  # [slots, r, vocab], [slots, dim, r]
        vocab = self.base.num_embeddings
        # Column `id` of slot `s`'s A is row `s·vocab + id` of the transposed table: one gather for the whole batch.
        flat = a_table.transpose(1, 2).reshape(-1, a_table.shape[1])
        rows = F.embedding(index[:, None] * vocab + ids, flat)  # [batch, seq, r]
        delta = torch.matmul(rows, b_table[index].transpose(-1, -2))  # [batch, seq, dim]
        if scale is not None:
            delta = delta * scale.to(delta.dtype)
        out = out + delta
        tok_ids, tok_rows = self._feeds.tokens[self.key]  # [slots, n], [slots, n, dim]
        match = ids[:, :, None] == tok_ids[index][:, None, :]  # [batch, seq, n]
        # At most one id matches (the runtime keeps the last of repeated ids, as index_copy does): an exact pick.
        replaced = torch.matmul(match.to(out.dtype), tok_rows[index])
        if scale is not None:
            replaced = replaced * scale.to(replaced.dtype)
        return torch.where(match.any(-1, keepdim=True), replaced, out)


class TiedTokensHead(nn.Module):
    """A tied LM head whose logits for each row's trainable ids use its slot's replacement rows (PEFT's tied
    TrainableTokensLayer computes ``F.linear(h, W')`` with W' the embedding weight after index_copy)."""

    def __init__(self, base: nn.Module, key: str, feeds: Any) -> None:
        super().__init__()
        self.base = base
        self.key = key
        self._feeds = feeds

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.base(h)
        index = self._feeds.index
        tok_ids, tok_rows = self._feeds.tokens[self.key]
        vocab = logits.shape[-1]
        onehot = tok_ids[index][:, :, None] == torch.arange(vocab, device=h.device)[None, None, :]  # [batch, n, vocab]
        new = torch.matmul(torch.matmul(h, tok_rows[index].transpose(-1, -2)), onehot.to(h.dtype))  # [batch, seq, vocab]
        return torch.where(onehot.any(1, keepdim=True), new, logits)


def tied_head_name(model: nn.Module, key: str) -> str | None:
    """The LM head's module name when it shares `key`'s weight (tie_word_embeddings), as PEFT then also wraps it."""
    if not getattr(model.config, "tie_word_embeddings", False):
        return None
    get_in, get_out = getattr(model, "get_input_embeddings", None), getattr(model, "get_output_embeddings", None)
    if get_in is None or get_out is None or get_in() is not model.get_submodule(key):
        return None
    head = get_out()
    if head is None or getattr(head, "weight", None) is not model.get_submodule(key).weight:
        return None
    return next(n for n, m in model.named_modules() if m is head)


def token_input_names(key: str) -> tuple[str, str]:
    return f"tokens_ids.{key}", f"tokens_rows.{key}"


def weight_sha256(weight: torch.Tensor) -> str:
    """sha256 of the float32 bytes: the runtime compares an adapter's saved embedding weight with it."""
    import hashlib

    return "sha256:" + hashlib.sha256(weight.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()
