"""Diagnostic ops for tests and the benchmark: sleep (cancellation, deadlines), fail (tracebacks), echo and
generate (tensor throughput each way)."""

from __future__ import annotations

import builtins
import time

import torch

from ..registry import op


@op("sleep")
def sleep(ctx, params, tensors):
    total = float(params["ms"])
    t0 = time.monotonic()
    while (elapsed := (time.monotonic() - t0) * 1000) < total:
        if not params.get("ignoreCancel"):
            ctx.check_cancelled()
        ctx.progress(elapsed, total, unit="ms")
        time.sleep(min(0.005, (total - elapsed) / 1000))
    ctx.progress(total, total, unit="ms")
    return {"slept": (time.monotonic() - t0) * 1000}, None


@op("fail")
def fail(ctx, params, tensors):
    exc_type = getattr(builtins, params.get("type", "RuntimeError"))
    raise exc_type(params["message"])


@op("echo")
def echo(ctx, params, tensors):
    if params.get("touch"):
        for t in tensors:
            if t.numel():
                t.reshape(-1).view(torch.uint8)[::4096].sum()
    result = {"nbytes": sum(t.numel() * t.element_size() for t in tensors), "count": len(tensors)}
    if "value" in params:
        result["value"] = params["value"]
    if params.get("echo", True):
        return result, ctx.named_tensors(tensors) if all(n is not None for n in ctx.tensor_names) else tensors
    return result, None


_pool: dict[str, torch.Tensor] = {}


@op("generate")
def generate(ctx, params, tensors):
    n = int(params["nbytes"])
    buf = _pool.get("u8")
    if buf is None or buf.numel() < n:  # kept between calls: the benchmark measures transport, not allocation
        buf = torch.empty(n, dtype=torch.uint8)
        buf.fill_(7)
        _pool["u8"] = buf
    return {"nbytes": n}, [buf[:n]]
