"""Export a LoRA train-step artifact: standard-op ONNX graphs that TypeScript drives with a plain InferenceSession.

    python -m loraport_sidecar.export.train_step (--base DIR | --builtin gpt2) --out DIR
        [--task causal-lm|seq-cls] [--target-modules c_attn] [--r 8] [--alpha 16] [--adapter DIR]

Writes into DIR (atomically: a sibling temp folder renamed at the end):
  train_step.onnx  (p…, m…, v…, step, lr, input_ids, attention_mask, labels) → (loss, new_p…, new_m…, new_v…, new_step)
  grad_step.onnx   (p…, batch) → (loss, grad…)                 — gradient accumulation, micro-batch by micro-batch
  apply_step.onnx  (p…, m…, v…, grad…, step, lr) → (new_p…, new_m…, new_v…, new_step)
  eval.onnx        (p…, batch) → (loss)
  forward.onnx     (p…, input_ids, attention_mask) → (logits)
  initial_adapter/ the starting LoRA weights as a PEFT folder (PEFT's default init, or --adapter)
  loraport-train.json names, shapes, optimizer constants, the export checks' measured figures (schema:
                   schemas/train-manifest.schema.json)

Recipe (../shared/notes/onnxruntime-notes.md §2): make_fx over torch.func.grad_and_value of functional_call, with
nll_loss decomposed, eager attention, the causal-mask shortcut disabled, symbolic shapes; then torch.onnx (dynamo).
Two graphs are traced, (loss, gradients, logits) and apply_step; grad_step, eval, forward and train_step are cut from and
joined out of them in ONNX (train_derive.py), which makes an export about 2.8x cheaper than tracing all five.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Iterator, Sequence
from unittest import mock

import numpy as np
import torch

from .support import use_traceable_experts
from .train_derive import derive
from .train_checks import ExportCheckError, check_dynamic_batch, check_graph_ops, compare_grads
from .train_graph import IGNORE_INDEX, TASKS, AdamWSettings, StepFunctions

FORMAT = "loraport-train-step"
FORMAT_VERSION = 1
GRAD_REL_TOLERANCE = 1e-5
EXAMPLE_SHAPE = (2, 8)
CHECK_SHAPES = ((2, 8), (3, 13))


def max_positions_of(config) -> int | None:
    """The model's context (GPT-2's n_positions, others' max_position_embeddings), None when it has none."""
    return int(getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 0) or 0) or None


def example_shape(max_positions: int | None) -> tuple[int, int]:
    """The traced example: strictly shorter than the context. At seq == n_positions the tracer proves seq equals
    the position table's size and specialises it (the graph then takes only that length); below it, seq stays
    symbolic, bounded by the context (see Artifact.batch_dynamic). Never 1: size-1 dims are specialised too."""
    b, t = EXAMPLE_SHAPE
    return (b, max(2, min(t, max_positions - 1))) if max_positions else (b, t)


def check_shapes(max_positions: int | None) -> tuple[tuple[int, int], ...]:
    """The gradient check's shapes, capped at the context (a model cannot take longer rows)."""
    return tuple((b, min(t, max_positions)) for b, t in CHECK_SHAPES) if max_positions else CHECK_SHAPES
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt")


# ---- model and adapter ---------------------------------------------------------------------------------------

def load_base(base: str | None, builtin: str | None, builtin_config: dict | None) -> tuple[torch.nn.Module, str]:
    """The frozen base model, in fp32 with eager attention (SDPA's backward has no ONNX translation)."""
    if (base is None) == (builtin is None):
        raise ValueError("give exactly one of --base DIR or --builtin NAME")
    if builtin is not None:
        from ..reference import tiny_models
        model = tiny_models.build(builtin, **(builtin_config or {}))
        source = f"builtin:{builtin}"
    else:
        if not os.path.isfile(os.path.join(base, "config.json")):
            raise FileNotFoundError(f"{base}: not a Hugging Face model folder (no config.json)")
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification
        cfg = AutoConfig.from_pretrained(base)
        archs = cfg.architectures or []
        loader = AutoModelForSequenceClassification if any(a.endswith("ForSequenceClassification") for a in archs) else AutoModelForCausalLM
        if loader is AutoModelForCausalLM:
            from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            # Up front, in one line: transformers' own error for (say) t5 or vit is a page about its auto classes.
            if cfg.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or getattr(cfg, "is_encoder_decoder", False):
                raise ValueError(f"train-step export of {cfg.model_type} ({', '.join(archs) or 'no architectures in config.json'}): "
                                 "only causal LMs and *ForSequenceClassification models are supported (the train step takes "
                                 "input_ids, attention_mask and labels)")
        model = loader.from_pretrained(base, dtype=torch.float32)
        source = os.path.abspath(base)
    model = model.float()
    model.set_attn_implementation("eager")
    use_traceable_experts(model)
    model.eval()
    return model, source


def default_task(model: torch.nn.Module) -> str:
    return "seq-cls" if type(model).__name__.endswith("ForSequenceClassification") else "causal-lm"


def make_peft_model(base: torch.nn.Module, task: str, adapter: str | None, r: int, alpha: float,
                    target_modules: Sequence[str] | None, seed: int) -> torch.nn.Module:
    """PEFT's own LoRA wrapper, so the initial weights and the saved keys are exactly PEFT's."""
    from peft import LoraConfig, PeftModel, get_peft_model
    torch.manual_seed(seed)  # PEFT's default init draws lora_A from torch's global RNG
    if adapter is not None:
        model = PeftModel.from_pretrained(base, adapter, is_trainable=True)
    else:
        cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(target_modules) if target_modules else None,
                         task_type="SEQ_CLS" if task == "seq-cls" else "CAUSAL_LM")
        try:
            model = get_peft_model(base, cfg)
        except ValueError as e:  # PEFT's NoMatchingPeftModuleError and friends: say which option to change
            names = sorted({n.rsplit(".", 1)[-1] for n, m in base.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d)) or type(m).__name__ == "Conv1D"})
            raise ValueError(f"target modules {list(target_modules) if target_modules else '(PEFT default)'}: {e} "
                             f"This model's linear layers are named {names}; pick from those (--target-modules a,b).") from None
    model.eval()  # dropout off: the graph is deterministic (documented in the manifest)
    return model


def trainable_params(model: torch.nn.Module) -> tuple[list[str], dict[str, str], dict[str, torch.Tensor]]:
    """Trainable parameter names in module order, their keys as PEFT saves them, and detached copies."""
    from peft import get_peft_model_state_dict
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError("the adapter has no trainable parameters")
    saved = get_peft_model_state_dict(model)
    by_ptr = {t.data_ptr(): k for k, t in saved.items()}
    params = dict(model.named_parameters())
    keys = {}
    for n in names:
        key = by_ptr.get(params[n].data_ptr())
        if key is None:
            raise ValueError(f"trainable parameter {n} is not in PEFT's saved state dict; cannot map it to an adapter key")
        keys[n] = key
    values = {n: params[n].detach().clone() for n in names}
    return names, keys, values


# ---- tracing and export --------------------------------------------------------------------------------------

@contextlib.contextmanager
def tracing_patches():
    """What make_fx needs from transformers and torch to produce a correct, dynamic, standard-op graph."""
    import transformers.masking_utils as masking
    from torch.nn.attention import SDPBackend, sdpa_kernel
    # The SDPA shortcuts branch on data (is the mask all ones?); a traced graph must not bake that in.
    with mock.patch.object(masking, "_ignore_causal_mask_sdpa", lambda *a, **k: False), \
            mock.patch.object(masking, "_ignore_bidirectional_mask_sdpa", lambda *a, **k: False), sdpa_kernel(SDPBackend.MATH):
        yield


def trace(fn: Callable, args: Sequence[torch.Tensor]) -> torch.fx.GraphModule:
    from torch._decomp import get_decompositions
    from torch.fx.experimental.proxy_tensor import make_fx
    # Without this decomposition the ONNX nll_loss has total_weight = 1: masked-label gradients come out too large.
    # The activation backwards have no ONNX translation in torch 2.13's exporter (silu_backward: Llama's MLP).
    aten = torch.ops.aten
    decomp = get_decompositions([aten.nll_loss_forward, aten.nll_loss_backward, aten.silu_backward, aten.gelu_backward,
                                 aten.sigmoid_backward, aten.tanh_backward, aten.threshold_backward])
    with tracing_patches():
        return make_fx(fn, decomposition_table=decomp, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*args)


def export_onnx(gm: torch.fx.GraphModule, args: Sequence[torch.Tensor], input_names: list[str], output_names: list[str],
                dynamic: list[dict | None], path: str) -> None:
    """torch.onnx (dynamo) of a traced aten graph; its progress lines go to stderr so stdout stays JSON.

    optimize=False: onnxscript 0.7.2's optimizer drops `x + 1e-8` as an "add zero", which deleted AdamW's eps and
    turned every parameter whose gradient is exactly zero (all lora_A at PEFT's init) into NaN. (AdamW now adds eps
    in a form no optimizer can fold, and the update gate catches non-finite params, but the optimizer gains nothing:
    ORT optimizes at load, and measured step time was the same with 3x fewer nodes.)
    """
    with contextlib.redirect_stdout(sys.stderr):
        program = torch.onnx.export(gm, tuple(args), dynamo=True, optimize=False, input_names=input_names,
                                    output_names=output_names, dynamic_shapes=tuple(dynamic), verbose=False)
        program.save(path)


# ---- the artifact --------------------------------------------------------------------------------------------

class Artifact:
    """Names and example inputs of the five graphs over one PEFT model."""

    def __init__(self, model: torch.nn.Module, names: list[str], keys: dict[str, str], task: str, adamw: AdamWSettings,
                 max_positions: int | None = None):
        self.fns = StepFunctions(model, names, task, adamw)
        self.max_positions = max_positions
        self.names = names
        self.keys = keys
        self.task = task
        self.io = [keys[n] for n in names]  # graph tensor names use the PEFT key: p.<key>, m.<key>, …

    def names_of(self, prefix: str) -> list[str]:
        return [f"{prefix}.{k}" for k in self.io]

    def batch_names(self, with_labels: bool = True) -> list[str]:
        return ["input_ids", "attention_mask"] + (["labels"] if with_labels else [])

    def batch_dynamic(self, with_labels: bool = True) -> list[dict]:
        from torch.export import Dim
        b = Dim("batch")
        s = Dim("seq", max=self.max_positions) if self.max_positions else Dim("seq")
        dims = [{0: b, 1: s}, {0: b, 1: s}]
        if with_labels:
            dims.append({0: b, 1: s} if self.task == "causal-lm" else {0: b})
        return dims

    def graphs(self) -> dict[str, dict[str, Any]]:
        """Per graph: the function, input names, output names, and which inputs are dynamic."""
        p, m, v, g = (self.names_of(x) for x in ("p", "m", "v", "grad"))
        np_, nm, nv = (self.names_of(x) for x in ("new_p", "new_m", "new_v"))
        n = len(self.io)
        return {
            "train_step": dict(fn=self.fns.train_step, inputs=p + m + v + ["step", "lr"] + self.batch_names(),
                               outputs=["loss"] + np_ + nm + nv + ["new_step"], dynamic=[None] * (3 * n + 2) + self.batch_dynamic()),
            "grad_step": dict(fn=self.fns.grad_step, inputs=p + self.batch_names(), outputs=["loss"] + g,
                              dynamic=[None] * n + self.batch_dynamic()),
            "apply_step": dict(fn=self.fns.apply_step, inputs=p + m + v + g + ["step", "lr"], outputs=np_ + nm + nv + ["new_step"],
                               dynamic=None),
            "eval": dict(fn=self.fns.eval_step, inputs=p + self.batch_names(), outputs=["loss"], dynamic=[None] * n + self.batch_dynamic()),
            "forward": dict(fn=self.fns.forward, inputs=p + self.batch_names(False), outputs=["logits"],
                            dynamic=[None] * n + self.batch_dynamic(False)),
        }


def example_batch(task: str, vocab: int, num_labels: int, shape: tuple[int, int], seed: int, pad: bool) -> dict[str, torch.Tensor]:
    """A batch with prompt-masked labels (and right padding when `pad`), the case the exporter bugs break."""
    gen = torch.Generator().manual_seed(seed)
    b, t = shape
    ids = torch.randint(0, vocab, (b, t), generator=gen)
    mask = torch.ones(b, t, dtype=torch.int64)
    if pad:
        for i in range(1, b):
            mask[i, t - i:] = 0
    if task == "causal-lm":
        labels = ids.clone()
        for i in range(b):
            labels[i, : 1 + i] = IGNORE_INDEX  # a prompt of varying length
        labels[mask == 0] = IGNORE_INDEX
    else:
        labels = torch.randint(0, num_labels, (b,), generator=gen)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def distinct_zeros(values: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    # Distinct tensors: make_fx merges aliased example inputs and the graph would then read v where it means m.
    return [torch.zeros_like(x).clone() for x in values]


def perturbed(values: Sequence[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """Params with every entry non-zero (PEFT starts B at zero, which would make A's gradient vanish)."""
    gen = torch.Generator().manual_seed(seed)
    return [x + 0.05 * torch.randn(x.shape, generator=gen) for x in values]


@contextlib.contextmanager
def _trainable_at(model: torch.nn.Module, names: list[str], values: Sequence[torch.Tensor]) -> Iterator[list[torch.nn.Parameter]]:
    """The named parameters set to `values` and trainable (no stale grads) for the block; restored, frozen, after."""
    params = dict(model.named_parameters())
    ps = [params[n] for n in names]
    saved = [p.detach().clone() for p in ps]
    try:
        with torch.no_grad():
            for p, x in zip(ps, values):
                p.copy_(x)
        for p in ps:
            p.grad = None
            p.requires_grad_(True)
        yield ps
    finally:
        with torch.no_grad():
            for p, x in zip(ps, saved):
                p.copy_(x)
                p.grad = None
                p.requires_grad_(False)


def reference_grads(model: torch.nn.Module, names: list[str], values: Sequence[torch.Tensor], batch: dict) -> tuple[float, list[np.ndarray]]:
    """Loss and gradients from PyTorch autograd on the PEFT model itself, with transformers' own loss."""
    with _trainable_at(model, names, values) as ps:
        out = model(**batch)
        out.loss.backward()
        return float(out.loss), [p.grad.detach().numpy().copy() for p in ps]


def reference_adamw_step(model: torch.nn.Module, names: list[str], values: Sequence[torch.Tensor], batch: dict, lr: float,
                         adamw: AdamWSettings) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Parameters after one torch.optim.AdamW step on the PEFT model from `values` (the real optimizer), and the
    gradients it used."""
    with _trainable_at(model, names, values) as ps:
        opt = torch.optim.AdamW(ps, lr=lr, betas=(adamw.beta1, adamw.beta2), eps=adamw.eps, weight_decay=adamw.weight_decay)
        model(**batch).loss.backward()
        grads = [p.grad.detach().numpy().copy() for p in ps]
        opt.step()
        return [p.detach().numpy().copy() for p in ps], grads


def update_check(folder: str, art: Artifact, model: torch.nn.Module, values: list[torch.Tensor], vocab: int, num_labels: int,
                 adamw: AdamWSettings) -> dict:
    """The first AdamW step from the real initial adapter vs torch.optim.AdamW.

    At PEFT's init lora_B = 0, so every lora_A gradient is exactly zero: this is where a lost eps gives 0/0.
    - apply_step.onnx fed torch's own gradients must reproduce torch.optim.AdamW (pure fp32 arithmetic);
    - train_step.onnx must be finite everywhere and agree where |g| >> eps. Where |g| is near eps, Adam's
      g / (|g| + eps) amplifies fp32 gradient noise (~1e-7 relative) up to a sizeable fraction of lr, in PyTorch
      against itself as well, so those entries are reported, not gated.
    """
    import onnxruntime as ort
    lr = 1e-3
    batch = example_batch(art.task, vocab, num_labels, check_shapes(art.max_positions)[1], seed=300, pad=True)
    want, torch_grads = reference_adamw_step(model, art.names, values, batch, lr, adamw)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    zeros = lambda prefix: {k: np.zeros(x.shape, np.float32) for k, x in zip(art.names_of(prefix), values)}  # noqa: E731
    p_feed = {k: x.numpy() for k, x in zip(art.names_of("p"), values)}
    scalars = {"step": np.array(0.0, np.float32), "lr": np.array(lr, np.float32)}
    apply = ort.InferenceSession(os.path.join(folder, "apply_step.onnx"), opts, providers=["CPUExecutionProvider"])
    got_apply = apply.run(None, {**p_feed, **zeros("m"), **zeros("v"), **dict(zip(art.names_of("grad"), torch_grads)), **scalars})[:len(values)]
    step = ort.InferenceSession(os.path.join(folder, "train_step.onnx"), opts, providers=["CPUExecutionProvider"])
    got_step = step.run(None, {**p_feed, **zeros("m"), **zeros("v"), **scalars, **{k: v.numpy() for k, v in batch.items()}})[1:1 + len(values)]
    apply_err, step_err, step_err_all, where = 0.0, 0.0, 0.0, ""
    for key, ga, gs, w, g in zip(art.io, got_apply, got_step, want, torch_grads):
        if not (np.isfinite(ga).all() and np.isfinite(gs).all()):
            raise ExportCheckError(f"train-step graphs: {key} becomes non-finite after one AdamW step from the initial adapter "
                                   f"(AdamW's eps folded away?); the artifact would train to NaN (report this as a loraport bug)")
        apply_err = max(apply_err, float(np.abs(ga - w).max()))
        d = np.abs(gs - w)
        step_err_all = max(step_err_all, float(d.max()))
        clear = np.abs(g) > 1e3 * adamw.eps
        if clear.any() and float(d[clear].max()) >= step_err:
            step_err, where = float(d[clear].max()), key
    rec = {"check": "first AdamW step from the initial adapter vs torch.optim.AdamW", "lr": lr,
           "apply_step_max_abs_err": apply_err, "param_max_abs_err": step_err, "param_max_abs_err_all": step_err_all,
           "worst_param": where, "tolerance_abs": 1e-2 * lr,
           "note": "param_max_abs_err over entries with |grad| > 1e3·eps; near-eps entries amplify fp32 gradient noise"}
    if apply_err > 1e-4 * lr:
        raise ExportCheckError(f"apply_step.onnx: AdamW on PyTorch's gradients differs from torch.optim.AdamW by {apply_err:.3g} "
                               f"(tolerance {1e-4 * lr:g}); the artifact would not train like PyTorch (report this as a loraport bug)")
    if step_err > 1e-2 * lr:
        raise ExportCheckError(f"train_step.onnx: updated params differ from torch.optim.AdamW by {step_err:.3g} at {where} "
                               f"(tolerance {1e-2 * lr:g}); the artifact would not train like PyTorch (report this as a loraport bug; "
                               f"--engine torch trains this model meanwhile)")
    return rec


def check_eval_and_forward(eval_sess, fwd_sess, model: torch.nn.Module, names: list[str], ps: Sequence[torch.Tensor], batch: dict,
                           p_feed: dict, want_loss: float, shape) -> None:
    """eval.onnx's loss and forward.onnx's logits vs the PEFT model (both graphs are cut from grad_step's)."""
    with _trainable_at(model, names, ps), torch.no_grad():
        want_logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float().numpy()
    got_loss = float(eval_sess.run(None, {**p_feed, **{k: v.numpy() for k, v in batch.items()}})[0])
    got_logits = fwd_sess.run(None, {**p_feed, "input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()})[0]
    loss_rel = abs(got_loss - want_loss) / max(abs(want_loss), 1e-30)
    logits_rel = float(np.abs(got_logits - want_logits).max()) / max(float(np.abs(want_logits).max()), 1e-30) if got_logits.shape == want_logits.shape else float("inf")
    if not (loss_rel <= GRAD_REL_TOLERANCE and logits_rel <= GRAD_REL_TOLERANCE):
        raise ExportCheckError(f"eval.onnx / forward.onnx check failed on shape {list(shape)}: loss rel {loss_rel:.3g}, logits rel {logits_rel:.3g}; "
                               f"tolerance {GRAD_REL_TOLERANCE:g}: the graphs do not compute the PEFT model's loss and logits (report this as a "
                               f"loraport bug, naming the model type; --engine torch trains it meanwhile)")


def gradient_check(folder: str, art: Artifact, model: torch.nn.Module, values: list[torch.Tensor], vocab: int, num_labels: int,
                   adamw: AdamWSettings) -> list[dict]:
    """Step-1 gradients of grad_step.onnx and of train_step.onnx (recovered from m1 = (1 − β1)·g) vs autograd."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    grad_sess = ort.InferenceSession(os.path.join(folder, "grad_step.onnx"), opts, providers=["CPUExecutionProvider"])
    step_sess = ort.InferenceSession(os.path.join(folder, "train_step.onnx"), opts, providers=["CPUExecutionProvider"])
    eval_sess = ort.InferenceSession(os.path.join(folder, "eval.onnx"), opts, providers=["CPUExecutionProvider"])
    fwd_sess = ort.InferenceSession(os.path.join(folder, "forward.onnx"), opts, providers=["CPUExecutionProvider"])
    results = []
    ps = perturbed(values, seed=1234)
    for i, shape in enumerate(check_shapes(art.max_positions)):
        batch = example_batch(art.task, vocab, num_labels, shape, seed=100 + i, pad=i > 0)
        want_loss, want = reference_grads(model, art.names, ps, batch)
        feed_batch = {k: v.numpy() for k, v in batch.items()}
        p_feed = {name: x.numpy() for name, x in zip(art.names_of("p"), ps)}
        out = grad_sess.run(None, {**p_feed, **feed_batch})
        loss, grads = float(out[0]), out[1:]
        step_feed = {**p_feed, **{k: np.zeros(x.shape, np.float32) for k, x in zip(art.names_of("m"), ps)},
                     **{k: np.zeros(x.shape, np.float32) for k, x in zip(art.names_of("v"), ps)},
                     "step": np.array(0.0, np.float32), "lr": np.array(1e-3, np.float32), **feed_batch}
        n = len(ps)
        out2 = step_sess.run(None, step_feed)
        m1 = out2[1 + n:1 + 2 * n]
        via_m = [m / (1.0 - adamw.beta1) for m in m1]
        for label, got, got_loss in (("grad_step", grads, loss), ("train_step", via_m, float(out2[0]))):
            max_abs, max_rel, worst = compare_grads(art.io, got, want)
            masked = int((batch["labels"] == IGNORE_INDEX).sum())
            loss_abs = abs(got_loss - want_loss)
            rec = {"graph": label, "shape": list(shape), "masked_labels": masked, "loss_abs_err": loss_abs,
                   "loss_rel_err": loss_abs / max(abs(want_loss), 1e-30), "grad_max_abs_err": max_abs,
                   "grad_max_rel_err": max_rel, "worst_param": worst}
            results.append(rec)
            # The gradient recovered from m1 carries one extra fp32 rounding of (1-β1)·g / (1-β1).
            tol = GRAD_REL_TOLERANCE if label == "grad_step" else 4 * GRAD_REL_TOLERANCE
            if not (max_rel <= tol) or not (rec["loss_rel_err"] <= GRAD_REL_TOLERANCE):
                raise ExportCheckError(f"{label}.onnx gradient check failed on shape {list(shape)}: max rel {max_rel:.3g} "
                                       f"(at {worst}), loss rel {rec['loss_rel_err']:.3g}; tolerance {tol:g}: the graph does not compute "
                                       f"PyTorch's gradients for this model (report this as a loraport bug, naming the model type; "
                                       f"--engine torch trains it meanwhile)")
        check_eval_and_forward(eval_sess, fwd_sess, model, art.names, ps, batch, p_feed, want_loss, shape)
    return results


def export_train_step(out: str, *, base: str | None = None, builtin: str | None = None, builtin_config: dict | None = None,
                      adapter: str | None = None, task: str | None = None, r: int = 8, alpha: float = 16.0,
                      target_modules: Sequence[str] | None = None, adamw: AdamWSettings = AdamWSettings(), seed: int = 0,
                      log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
                      progress: Callable[[int, int, str], None] = lambda done, total, message: None) -> dict:
    """Write the artifact folder `out`; returns the manifest. Raises ExportCheckError when a gate fails.

    `progress(done, total, message)` is called before each stage (five graphs, then the checks); it may raise to
    cancel (the temp folder is removed).
    """
    t_start = time.perf_counter()
    torch.set_grad_enabled(True)
    base_model, source = load_base(base, builtin, builtin_config)
    task = task or default_task(base_model)
    if task not in TASKS:
        raise ValueError(f"task {task!r}: expected one of {list(TASKS)}")
    if task == "seq-cls" and default_task(base_model) != "seq-cls":
        raise ValueError(f"task seq-cls needs a *ForSequenceClassification model; {source} is {type(base_model).__name__}")
    config = base_model.config
    vocab = int(config.vocab_size)
    num_labels = int(getattr(config, "num_labels", 0) or 0)
    model = make_peft_model(base_model, task, adapter, r, alpha, target_modules, seed)
    names, keys, values = trainable_params(model)
    for p in model.parameters():
        p.requires_grad_(False)  # only the graph's explicit inputs are differentiated
    art = Artifact(model, names, keys, task, adamw, max_positions_of(config))
    vals = [values[n] for n in names]

    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".train-step-", dir=parent)
    try:
        model.save_pretrained(os.path.join(tmp, "initial_adapter"))
        batch = example_batch(task, vocab, num_labels, example_shape(art.max_positions), seed=7, pad=False)
        ex = {
            "p": vals, "m": distinct_zeros(vals), "v": distinct_zeros(vals), "g": distinct_zeros(vals),
            "step": torch.tensor(0.0), "lr": torch.tensor(1e-3),
        }
        batch_args = [batch["input_ids"], batch["attention_mask"], batch["labels"]]
        args_of = {
            "train_step": [*ex["p"], *ex["m"], *ex["v"], ex["step"], ex["lr"], *batch_args],
            "grad_step": [*ex["p"], *batch_args],
            "apply_step": [*ex["p"], *ex["m"], *ex["v"], *ex["g"], ex["step"], ex["lr"]],
            "eval": [*ex["p"], *batch_args],
            "forward": [*ex["p"], *batch_args[:2]],
        }
        graphs_out: dict[str, dict] = {}
        specs = art.graphs()
        # Two traces; grad_step, eval, forward and train_step are cut from and joined out of them (train_derive.py).
        traced = {"grad_step": dict(specs["grad_step"], fn=art.fns.grad_logits_step, outputs=specs["grad_step"]["outputs"] + ["logits"]),
                  "apply_step": specs["apply_step"]}
        stages = len(traced) + 2
        seconds: dict[str, float] = {}
        for i, (name, spec) in enumerate(traced.items()):
            progress(i, stages, f"tracing and exporting {name}.onnx")
            t0 = time.perf_counter()
            gm = trace(spec["fn"], args_of[name])
            dynamic = spec["dynamic"] if spec["dynamic"] is not None else [None] * len(spec["inputs"])
            export_onnx(gm, args_of[name], spec["inputs"], spec["outputs"], dynamic, os.path.join(tmp, f"{name}.onnx"))
            seconds[name] = round(time.perf_counter() - t0, 2)
        progress(len(traced), stages, "deriving eval, forward and train_step")
        t0 = time.perf_counter()
        derive(tmp, "grad_step.onnx", "apply_step.onnx", specs)
        derived = round(time.perf_counter() - t0, 2)
        for name, spec in specs.items():
            path = os.path.join(tmp, f"{name}.onnx")
            info = check_graph_ops(path)
            check_dynamic_batch(path, [n for n in ("input_ids", "attention_mask", "labels") if n in spec["inputs"]])
            graphs_out[name] = {"file": f"{name}.onnx", "inputs": spec["inputs"], "outputs": spec["outputs"],
                                "ir_version": info["ir_version"], "opset": info["opset"], "nodes": info["nodes"],
                                "op_types": info["op_types"], "export_seconds": seconds.get(name, derived),
                                **({} if name in seconds else {"derived": "from grad_step" if name != "train_step" else "grad_step + apply_step"})}
            log(f"exported {name}.onnx ({info['nodes']} nodes, {graphs_out[name]['export_seconds']} s)")
        progress(stages - 1, stages, "checking gradients and the AdamW update against PyTorch")
        checks = gradient_check(tmp, art, model, vals, vocab, num_labels, adamw)
        log("gradient check passed: max rel " + ", ".join(f"{c['graph']}{c['shape']} {c['grad_max_rel_err']:.2e}" for c in checks))
        update = update_check(tmp, art, model, vals, vocab, num_labels, adamw)
        log(f"AdamW update check passed: max abs {update['param_max_abs_err']:.2e}")
        tokenizer = copy_tokenizer(base, tmp) if base else False
        with open(os.path.join(tmp, "initial_adapter", "adapter_config.json")) as f:
            peft_config = json.load(f)
        manifest = build_manifest(art, values, source, config, task, peft_config, adamw, graphs_out, checks, update, tokenizer,
                                  time.perf_counter() - t_start)
        with open(os.path.join(tmp, "loraport-train.json"), "w") as f:
            json.dump(manifest, f, indent=2)
        replace_folder(tmp, out)
        progress(stages, stages, "done")
        return manifest
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def copy_tokenizer(base: str, folder: str) -> bool:
    files = [f for f in TOKENIZER_FILES if os.path.isfile(os.path.join(base, f))]
    if "tokenizer.json" not in files:
        return False
    os.makedirs(os.path.join(folder, "tokenizer"))
    for f in files:
        shutil.copyfile(os.path.join(base, f), os.path.join(folder, "tokenizer", f))
    return True


def replace_folder(tmp: str, out: str) -> None:
    """Move the finished temp folder to `out`; an existing artifact there is replaced only after success."""
    if os.path.exists(out):
        if os.listdir(out) and not os.path.isfile(os.path.join(out, "loraport-train.json")):
            raise FileExistsError(f"{out}: exists, is not empty and is not a train-step artifact; refusing to overwrite")
        old = tmp + ".old"
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def build_manifest(art: Artifact, values: dict[str, torch.Tensor], source: str, config, task: str, peft_config: dict,
                   adamw: AdamWSettings, graphs: dict, checks: list[dict], update: dict, tokenizer: bool, seconds: float) -> dict:
    import onnx
    import peft
    import transformers
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "task": task,
        "base": {"source": source, "model_type": config.model_type, "vocab_size": int(config.vocab_size),
                 "num_labels": int(getattr(config, "num_labels", 0) or 0) if task == "seq-cls" else None,
                 "max_positions": max_positions_of(config)},
        "adapter": {"folder": "initial_adapter", "r": int(peft_config.get("r", 0)), "lora_alpha": float(peft_config.get("lora_alpha", 0)),
                    "target_modules": peft_config.get("target_modules"), "dropout": "disabled: graphs run the model in eval mode (deterministic)"},
        "params": [{"key": art.keys[n], "shape": list(values[n].shape), "dtype": "F32"} for n in art.names],
        "inputs": {
            "input_ids": {"dtype": "I64", "shape": ["batch", "seq"]},
            "attention_mask": {"dtype": "I64", "shape": ["batch", "seq"]},
            "labels": {"dtype": "I64", "shape": ["batch", "seq"] if task == "causal-lm" else ["batch"], "ignore_index": IGNORE_INDEX},
            "step": {"dtype": "F32", "shape": [], "meaning": "optimizer steps already taken (0 before the first)"},
            "lr": {"dtype": "F32", "shape": [], "meaning": "learning rate of this step (schedules are computed by the caller)"},
        },
        "loss": ("mean next-token cross entropy over labels != -100 (labels are shifted inside the graph, as transformers does)"
                 if task == "causal-lm" else "mean cross entropy of one class label per sequence"),
        "optimizer": {"name": "adamw", "semantics": "torch.optim.AdamW (decoupled weight decay, bias correction, amsgrad off)",
                      "beta1": adamw.beta1, "beta2": adamw.beta2, "eps": adamw.eps, "weight_decay": adamw.weight_decay},
        "accumulation": ("grad_step.onnx gives one micro-batch's mean-loss gradients; the trainer averages them over the N "
                         "micro-batches and runs apply_step.onnx once — PyTorch's loss/N per micro-batch then one optimizer step"),
        "graphs": graphs,
        "checks": {"gradient_tolerance_rel": GRAD_REL_TOLERANCE,
                   "relative_error": "per tensor max|got - want| / max|want|, worst tensor reported",
                   "reference": "PyTorch autograd on the PEFT model with transformers' loss", "gradient": checks, "update": update},
        "tokenizer": "tokenizer" if tokenizer else None,
        "versions": {"torch": torch.__version__, "peft": peft.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__},
        "export_seconds": round(seconds, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loraport_sidecar.export.train_step", description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--base", help="Hugging Face model folder (config.json + weights)")
    src.add_argument("--builtin", help="a seeded tiny model: gpt2, llama, roberta")
    ap.add_argument("--builtin-config", help="JSON keyword arguments for the builtin builder", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--adapter", help="start from this PEFT adapter folder instead of PEFT's default init")
    ap.add_argument("--task", choices=TASKS)
    ap.add_argument("--target-modules", help="comma-separated module names (default: PEFT's per-architecture default)")
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        manifest = export_train_step(
            a.out, base=a.base, builtin=a.builtin, builtin_config=json.loads(a.builtin_config) if a.builtin_config else None,
            adapter=a.adapter, task=a.task, r=a.r, alpha=a.alpha,
            target_modules=[t for t in a.target_modules.split(",") if t] if a.target_modules else None,
            adamw=AdamWSettings(beta1=a.beta1, beta2=a.beta2, eps=a.eps, weight_decay=a.weight_decay), seed=a.seed)
    except (ExportCheckError, ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"export failed, nothing written: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"ok": True, "out": os.path.abspath(a.out), "params": len(manifest["params"]),
                      "checks": manifest["checks"]["gradient"], "export_seconds": manifest["export_seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
