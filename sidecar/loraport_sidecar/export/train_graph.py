"""The functional pieces of a LoRA training step, written so `make_fx` can trace them into standard ops.

A PEFT model holds the frozen base weights (they become ONNX initializers); the LoRA parameters, the AdamW
moments, the step count, the learning rate and the batch are explicit inputs. Every function here is pure:
tensors in, tensors out, so one traced graph per function is the whole artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call

IGNORE_INDEX = -100
TASKS = ("causal-lm", "seq-cls")


@dataclass(frozen=True)
class AdamWSettings:
    """torch.optim.AdamW's constants (lr is a graph input so schedules live in TypeScript)."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.01


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy over labels != -100 (transformers' ForCausalLMLoss without num_items)."""
    # Shift the labels, not the logits: pad one ignored label at the end, as transformers does.
    shifted = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
    vocab = logits.shape[-1]
    return F.cross_entropy(logits.float().reshape(-1, vocab), shifted.reshape(-1), ignore_index=IGNORE_INDEX)


def seq_cls_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy of one class label per sequence (single-label classification)."""
    return F.cross_entropy(logits.float(), labels.reshape(-1), ignore_index=IGNORE_INDEX)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"causal-lm": causal_lm_loss, "seq-cls": seq_cls_loss}


class StepFunctions:
    """Builds the traced functions over one PEFT model and an ordered list of trainable parameter names."""

    def __init__(self, model: torch.nn.Module, param_names: Sequence[str], task: str, adamw: AdamWSettings):
        if task not in LOSSES:
            raise ValueError(f"task {task!r}: expected one of {list(TASKS)}")
        self.model = model
        self.names = list(param_names)
        self.task = task
        self.loss_fn = LOSSES[task]
        self.adamw = adamw

    # ---- pieces ---------------------------------------------------------------------------------

    def _loss(self, params: dict[str, torch.Tensor], input_ids, attention_mask, labels) -> torch.Tensor:
        return self._loss_and_logits(params, input_ids, attention_mask, labels)[0]

    def _loss_and_logits(self, params: dict[str, torch.Tensor], input_ids, attention_mask, labels) -> tuple[torch.Tensor, torch.Tensor]:
        out = functional_call(self.model, params, args=(), kwargs={"input_ids": input_ids, "attention_mask": attention_mask}, strict=False)
        return self.loss_fn(out.logits, labels), out.logits

    def _logits(self, params: dict[str, torch.Tensor], input_ids, attention_mask) -> torch.Tensor:
        out = functional_call(self.model, params, args=(), kwargs={"input_ids": input_ids, "attention_mask": attention_mask}, strict=False)
        return out.logits

    def _grads(self, ps: Sequence[torch.Tensor], input_ids, attention_mask, labels):
        # torch.autograd.grad, traced by make_fx below autograd, rather than torch.func.grad_and_value: under
        # functorch's grad transform nn.Linear on 3-D inputs concretises the batch size and the graph loses
        # its dynamic batch/sequence dims (seen with RoBERTa).
        loss, grads, _ = self._grads_and_logits(ps, input_ids, attention_mask, labels)
        return loss, grads

    def _grads_and_logits(self, ps: Sequence[torch.Tensor], input_ids, attention_mask, labels):
        leaves = [p.detach().requires_grad_(True) for p in ps]
        with torch.enable_grad():
            loss, logits = self._loss_and_logits(dict(zip(self.names, leaves)), input_ids, attention_mask, labels)
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        return loss.detach(), [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, ps)], logits.detach()

    def _adamw(self, ps, ms, vs, gs, step, lr):
        """One torch.optim.AdamW step (decoupled weight decay, bias correction), as in _single_tensor_adamw."""
        a = self.adamw
        t = step + 1.0
        bc1 = 1.0 - torch.pow(torch.tensor(a.beta1, dtype=torch.float32), t)
        bc2_sqrt = torch.sqrt(1.0 - torch.pow(torch.tensor(a.beta2, dtype=torch.float32), t))
        step_size = lr / bc1
        new_p, new_m, new_v = [], [], []
        for p, m, v, g in zip(ps, ms, vs, gs):
            p = p * (1.0 - lr * a.weight_decay)
            m = m + (g - m) * (1.0 - a.beta1)  # torch uses lerp_(grad, 1 - beta1)
            v = v * a.beta2 + g * g * (1.0 - a.beta2)
            # eps enters scaled by a runtime value (not a constant), so no graph optimizer can fold "+ eps" away
            # as an add-zero; (√v + eps·√bc2) / √bc2 equals torch's √v / √bc2 + eps up to rounding.
            denom = (torch.sqrt(v) + a.eps * bc2_sqrt) / bc2_sqrt
            p = p - step_size * (m / denom)
            new_p.append(p)
            new_m.append(m)
            new_v.append(v)
        return new_p, new_m, new_v, t

    # ---- the traced functions (flat positional tensors in, flat tuple out) -------------------------

    def split(self, flat: Sequence[torch.Tensor], groups: int):
        n = len(self.names)
        return [list(flat[i * n:(i + 1) * n]) for i in range(groups)], list(flat[groups * n:])

    def train_step(self, *flat):
        """(p…, m…, v…, step, lr, input_ids, attention_mask, labels) → (loss, p'…, m'…, v'…, step')."""
        (ps, ms, vs), (step, lr, input_ids, attention_mask, labels) = self.split(flat, 3)
        loss, gs = self._grads(ps, input_ids, attention_mask, labels)
        new_p, new_m, new_v, t = self._adamw(ps, ms, vs, gs, step, lr)
        return (loss, *new_p, *new_m, *new_v, t)

    def grad_step(self, *flat):
        """(p…, input_ids, attention_mask, labels) → (loss, g…): for gradient accumulation."""
        (ps,), (input_ids, attention_mask, labels) = self.split(flat, 1)
        loss, gs = self._grads(ps, input_ids, attention_mask, labels)
        return (loss, *gs)

    def grad_logits_step(self, *flat):
        """(p…, input_ids, attention_mask, labels) → (loss, g…, logits): the one traced graph that grad_step, eval
        and forward are cut from (export/train_derive.py)."""
        (ps,), (input_ids, attention_mask, labels) = self.split(flat, 1)
        loss, gs, logits = self._grads_and_logits(ps, input_ids, attention_mask, labels)
        return (loss, *gs, logits)

    def apply_step(self, *flat):
        """(p…, m…, v…, g…, step, lr) → (p'…, m'…, v'…, step'): AdamW on accumulated gradients."""
        (ps, ms, vs, gs), (step, lr) = self.split(flat, 4)
        new_p, new_m, new_v, t = self._adamw(ps, ms, vs, gs, step, lr)
        return (*new_p, *new_m, *new_v, t)

    def eval_step(self, *flat):
        """(p…, input_ids, attention_mask, labels) → (loss,)."""
        (ps,), (input_ids, attention_mask, labels) = self.split(flat, 1)
        with torch.no_grad():
            return (self._loss(dict(zip(self.names, ps)), input_ids, attention_mask, labels),)

    def forward(self, *flat):
        """(p…, input_ids, attention_mask) → (logits,): the adapted model's forward, for checking saved adapters."""
        (ps,), (input_ids, attention_mask) = self.split(flat, 1)
        with torch.no_grad():
            return (self._logits(dict(zip(self.names, ps)), input_ids, attention_mask),)
