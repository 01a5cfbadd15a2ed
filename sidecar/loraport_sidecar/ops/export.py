"""exportOnnx: export a base model to ONNX for loraport's runtime (adapter-inputs or merged); see export/onnx_export.py."""

from __future__ import annotations

import copy

import torch

from ..export.onnx_export import export_model, export_onnx
from ..registry import op


def _plain_copy(entry, merged: bool):
    """A float32 copy of a handle's model without LoRA layers: the attached adapter merged in, or removed."""
    model = copy.deepcopy(entry.model)
    if hasattr(model, "merge_and_unload"):  # a PeftModel
        model = model.merge_and_unload() if merged else model.unload()
    elif entry.adapter_kind is not None:
        raise ValueError(f"handle has a {entry.adapter_kind} adapter attached; exportOnnx takes PEFT adapters or a plain model (merge it first with mergeAndUnload)")
    return model.to(torch.float32)


@op("exportOnnx")
def export_onnx_op(ctx, params, tensors):
    mode = params.get("mode", "adapter-inputs")
    ext = {"auto": None, "yes": True, "no": False}[params.get("externalData", "auto")]
    targets = params.get("targets")
    heads = params.get("headInputs")
    kv = params.get("kvCache", True)
    defaults = params.get("ortAdapterDefaults", False)
    tokenizer = params.get("tokenizer")

    def progress(phase: str, done: int, total: int, message: str, unit: str = "stages") -> None:
        ctx.check_cancelled()
        # Stage changes always go out (each is a phase line in the CLI); per-layer events are throttled.
        ctx.progress(done, total, message, phase=phase, unit=unit, throttle=unit != "stages")

    if ("base" in params) == ("handle" in params):
        raise ValueError("exportOnnx: give exactly one of 'base' (a model folder) or 'handle' (a loaded model)")
    if "base" in params:
        res = export_onnx(params["base"], params["out"], mode=mode, targets=targets, adapter_dir=params.get("adapter"),
                          external_data=ext, progress=progress, head_inputs=heads, kv_cache=kv,
                          tokenizer_dir=tokenizer, lora_defaults=defaults)
    else:
        entry = ctx.models.get(params["handle"])
        if params.get("adapter"):
            raise ValueError("adapter: with a model handle, attach the adapter to the handle (attachAdapter) instead")
        merged = mode == "merged"
        if merged and entry.adapter_kind is None:
            raise ValueError("mode 'merged' needs an adapter attached to the handle (attachAdapter)")
        model = _plain_copy(entry, merged)
        res = export_model(model, params["out"], mode=mode, targets=targets, external_data=ext, progress=progress,
                           source_dtype=entry.dtype, base_path=f"handle:{params['handle']}", premerged=merged, head_inputs=heads, kv_cache=kv, lora_defaults=defaults,
                           tokenizer_dir=tokenizer or entry.source_dir)
    return {"out": res.out_dir, "seconds": res.seconds, "mode": res.manifest["mode"], "loraModules": len(res.manifest["lora"]),
            "checksum": res.manifest["base"]["checksum"]}, None
