"""conformanceCase: the conformance suite's reference side as a sidecar op (see loraport_sidecar/conformance)."""

from __future__ import annotations

from ..conformance.run_case import export_for_case, run_case
from ..registry import op


@op("conformanceCase")
def conformance_case(ctx, params, tensors):
    ctx.progress(0, 2, "reference numbers", phase="conformance", unit="steps")
    manifest = run_case(params["case"], params["out"], reference_dir=params.get("referenceDir"), base_dir=params.get("base"),
                        ts_adapter=params.get("tsAdapter"), ts_adapter_forward=params.get("tsAdapterForward"),
                        lora_alpha=params.get("loraAlpha"))
    ctx.check_cancelled()
    if params.get("onnx"):
        ctx.progress(1, 2, "ONNX exports", phase="conformance", unit="steps")
        export_for_case(manifest, list(params["onnx"]))
    ctx.progress(2, 2, "done", phase="conformance", unit="steps")
    return {"manifest": manifest}, None
