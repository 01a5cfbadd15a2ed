"""Which models the ONNX exporter can take, checked before any tracing, and its failures as one line.

The exporter's graph takes token ids and an attention mask (plus a KV cache for causal LMs), so a model that needs other
inputs cannot be exported however torch.export is driven; saying so up front saves the minute a failed capture costs and
replaces torch's multi-page report (with ANSI colour codes) by one line naming the architecture.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def architecture(model: nn.Module) -> str:
    cfg = getattr(model, "config", None)
    return str(getattr(cfg, "model_type", "") or type(model).__name__)


def unsupported_reason(model: nn.Module) -> str | None:
    """Why `model` cannot be exported, in words for the user, or None when it can."""
    cfg = getattr(model, "config", None)
    if getattr(cfg, "is_encoder_decoder", False):
        return ("encoder-decoder (seq2seq) models are not supported: the exported graph takes input_ids and attention_mask only, "
                "and the decoder needs its own inputs; merge the adapter instead (loraport merge)")
    main_input = getattr(model, "main_input_name", "input_ids")
    if main_input != "input_ids":
        return (f"the exported graph takes token ids (input_ids), and this model reads {main_input}; "
                "merge the adapter instead (loraport merge)")
    return None


def ready_for_export(model: nn.Module) -> None:
    """Refuse (the exporter's ExportError, naming the architecture) a model the exporter cannot take; otherwise apply,
    in place, the settings that make it traceable (`use_traceable_experts`)."""
    from .onnx_export import ExportError

    reason = unsupported_reason(model)
    if reason:
        raise ExportError(f"ONNX export of {architecture(model)} ({type(model).__name__}): {reason}")
    use_traceable_experts(model)


def use_traceable_experts(model: nn.Module) -> None:
    """Mixture-of-experts layers: transformers' default grouped-matmul kernel (transformers.grouped_mm_fallback) has no
    ONNX conversion; its batched-matmul one (a gather of each token's expert weights and a bmm) converts, with the
    same sums. Used by the inference and the train-step exporters."""
    current = getattr(getattr(model, "config", None), "_experts_implementation", None)
    if hasattr(model, "set_experts_implementation") and current not in (None, "eager", "batched_mm"):
        try:
            model.set_experts_implementation("batched_mm")
        except (ValueError, AttributeError):
            pass  # no switchable experts (a dense model): nothing to change


def summarize_failure(exc: BaseException) -> str:
    """torch.onnx's failure report as its one meaningful line (the underlying exception), without colour codes."""
    text = strip_ansi(str(exc))
    lines = [ln.strip() for ln in text.splitlines()]
    if "## Exception summary" in lines:
        rest = [ln for ln in lines[lines.index("## Exception summary") + 1:] if ln]
        if rest:
            # "<class 'torch.onnx._internal.exporter._errors.DispatchError'>: ..." -> "DispatchError: ..."
            return re.sub(r"^<class '(?:[\w]+\.)*(\w+)'>: ", r"\1: ", rest[0])
    for ln in lines:
        m = re.search(r"Error when translating node %(\w+) .*?target=([\w.]+)", ln)
        if m:
            return f"the ONNX converter has no translation for {m.group(2)}"
    return next((ln for ln in lines if ln), type(exc).__name__)


def explain_failure(model: nn.Module, exc: BaseException) -> Any:
    """An ExportError for a failed capture/conversion of `model`: architecture plus one line, the cause chained."""
    from .onnx_export import ExportError

    return ExportError(f"ONNX export of {architecture(model)} ({type(model).__name__}) failed: {summarize_failure(exc)}")
