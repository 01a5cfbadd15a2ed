"""Raw frames ⇄ torch tensors, without copies where the buffer allows it."""

from __future__ import annotations

from typing import Any

import torch

from .protocol import DTYPE_TO_TORCH_NAME, TORCH_NAME_TO_DTYPE, nbytes_of

_TORCH = {k: getattr(torch, v) for k, v in DTYPE_TO_TORCH_NAME.items()}


def frame_to_tensor(desc: dict, frame: Any) -> torch.Tensor:
    """View a received frame as a tensor (zero-copy for large frames, whose buffers are writable)."""
    dtype = _TORCH[desc["dtype"]]
    shape = list(desc["shape"])
    buf = frame.buffer if hasattr(frame, "buffer") else memoryview(frame)
    if nbytes_of(desc) == 0:
        return torch.empty(shape, dtype=dtype)
    if buf.readonly:
        buf = bytearray(buf)  # small frames arrive as bytes; a copy is cheaper than torch's warning
    # Writable now, so torch does not warn (no catch_warnings: it costs more than the rest of a small call's decode).
    flat = torch.frombuffer(buf, dtype=torch.uint8)
    return flat.view(dtype).reshape(shape)


def tensor_to_frame(t: torch.Tensor, name: str | None = None) -> tuple[dict, memoryview]:
    """A C-contiguous CPU view of ``t`` and its descriptor; the memoryview keeps the tensor alive."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    key = str(t.dtype).removeprefix("torch.")
    if key not in TORCH_NAME_TO_DTYPE:
        raise TypeError(f"tensor {name or ''} has dtype {t.dtype}, which has no wire name")
    desc: dict = {"dtype": TORCH_NAME_TO_DTYPE[key], "shape": list(t.shape), "nbytes": t.numel() * t.element_size()}
    if name is not None:
        desc["name"] = name
    if t.numel() == 0:
        return desc, memoryview(b"")
    raw = t.reshape(-1).view(torch.uint8).numpy()
    return desc, memoryview(raw)


def pack_tensors(out: Any) -> tuple[list[dict], list[memoryview]]:
    """A handler's tensor output (None, a list, or {name: tensor}) as descriptors and frames."""
    if out is None:
        return [], []
    items = out.items() if isinstance(out, dict) else ((None, t) for t in out)
    descs, frames = [], []
    for name, t in items:
        d, f = tensor_to_frame(t, name)
        descs.append(d)
        frames.append(f)
    return descs, frames
