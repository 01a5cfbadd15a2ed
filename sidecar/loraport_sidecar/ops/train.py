"""exportTrainStep: write a LoRA train-step artifact (standard-op ONNX graphs + manifest); see export/train_step.py."""

from __future__ import annotations

from ..export.train_graph import AdamWSettings
from ..export.train_step import export_train_step
from ..registry import op


@op("exportTrainStep")
def export_train_step_op(ctx, params, tensors):
    if ("base" in params) == ("builtin" in params):
        raise ValueError("exportTrainStep: give exactly one of 'base' (a model folder) or 'builtin' (a seeded tiny model)")
    lora = params.get("lora", {})
    opt = params.get("optimizer", {})

    def progress(done: int, total: int, message: str) -> None:
        ctx.check_cancelled()
        ctx.progress(done, total, message, phase="export", unit="stages")

    manifest = export_train_step(
        params["out"], base=params.get("base"), builtin=params.get("builtin"), builtin_config=params.get("builtinConfig"),
        adapter=params.get("adapter"), task=params.get("task"), r=lora.get("r", 8), alpha=lora.get("alpha", 16.0),
        target_modules=lora.get("targetModules"),
        adamw=AdamWSettings(beta1=opt.get("beta1", 0.9), beta2=opt.get("beta2", 0.999), eps=opt.get("eps", 1e-8),
                            weight_decay=opt.get("weightDecay", 0.01)),
        seed=params.get("seed", 0), log=lambda s: None, progress=progress)
    grads = manifest["checks"]["gradient"]
    return {"out": params["out"], "task": manifest["task"], "params": len(manifest["params"]),
            "gradMaxRelErr": max(c["grad_max_rel_err"] for c in grads), "updateMaxAbsErr": manifest["checks"]["update"]["param_max_abs_err"],
            "seconds": manifest["export_seconds"]}, None
