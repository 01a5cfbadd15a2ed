"""The wire protocol: header frames (msgpack maps) and raw tensor frames, both directions.

A message is ``[header, raw0, raw1, ...]``: the header is a msgpack map validated against
``schemas/protocol/message.schema.json``; each raw frame holds one C-contiguous little-endian tensor
described, in order, by ``header["tensors"]``. Tensor bytes never go inside the msgpack document
(an extra copy and an unaligned offset on the JS side).
"""

from __future__ import annotations

import sys
import time
import traceback as tb
from dataclasses import dataclass, field
from typing import Any

import msgpack

PROTOCOL_VERSION = 1

# safetensors names ⇄ torch dtype names; torch itself is imported lazily (start-up time).
DTYPE_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}
DTYPE_TO_TORCH_NAME = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}
TORCH_NAME_TO_DTYPE = {v: k for k, v in DTYPE_TO_TORCH_NAME.items()}

assert sys.byteorder == "little", "the wire format is little-endian; big-endian hosts are not supported"


class ProtocolViolation(Exception):
    """A received message breaks the protocol. Answered with an error of type ``Protocol``; the sidecar stays up."""

    def __init__(self, message: str, request_id: int | None = None, method: str | None = None):
        super().__init__(message)
        self.request_id = request_id
        self.method = method


class Cancelled(Exception):
    """Raised inside an op by ``ctx.check_cancelled()``; the reply is an error of type ``Cancelled``."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before or while it ran."""


@dataclass
class Request:
    id: int
    method: str
    params: dict
    descriptors: list[dict]
    frames: list[Any]  # zmq.Frame or bytes, one per descriptor
    deadline: float | None  # ms since epoch
    ident: bytes = b""
    nbytes: int = 0  # tensor bytes held until the request is done (backpressure accounting)
    received_at: float = field(default_factory=time.monotonic)


def nbytes_of(desc: dict) -> int:
    n = DTYPE_ITEMSIZE[desc["dtype"]]
    for d in desc["shape"]:
        n *= d
    return n


def unpack_header(frame: bytes | memoryview, max_header_bytes: int) -> dict:
    if len(frame) > max_header_bytes:
        raise ProtocolViolation(f"header frame of {len(frame)} bytes exceeds the {max_header_bytes}-byte limit")
    try:
        header = msgpack.unpackb(frame, raw=False, strict_map_key=True, max_bin_len=0, max_ext_len=0)
    except Exception as e:  # msgpack raises several types for garbage
        raise ProtocolViolation(f"header frame is not a msgpack document: {e}") from None
    if not isinstance(header, dict):
        raise ProtocolViolation(f"header must be a msgpack map, got {type(header).__name__}")
    return header


def check_frames(header: dict, frames: list, max_message_bytes: int) -> None:
    """Descriptors must match the raw frames exactly: count, nbytes = prod(shape)·itemsize, total under the cap."""
    rid, method = header.get("id"), header.get("method")
    descs = header["tensors"]
    if len(descs) != len(frames):
        raise ProtocolViolation(f"header describes {len(descs)} tensors but {len(frames)} raw frames followed", rid, method)
    total = 0
    for i, (d, f) in enumerate(zip(descs, frames)):
        want = nbytes_of(d)
        label = d.get("name", f"#{i}")
        if d["nbytes"] != want:
            raise ProtocolViolation(f"tensor {label}: nbytes {d['nbytes']} != prod(shape {d['shape']}) * itemsize({d['dtype']}) = {want}", rid, method)
        if len(f) != want:
            raise ProtocolViolation(f"tensor {label}: raw frame has {len(f)} bytes, descriptor says {want}", rid, method)
        total += want
    if total > max_message_bytes:
        raise ProtocolViolation(f"message carries {total} tensor bytes, over the {max_message_bytes}-byte limit", rid, method)


def pack(header: dict) -> bytes:
    return msgpack.packb(header, use_bin_type=True)


def result_header(req_id: int, method: str, result: dict, descriptors: list[dict]) -> dict:
    return {"v": PROTOCOL_VERSION, "id": req_id, "kind": "result", "method": method, "result": result, "tensors": descriptors}


def error_header(req_id: int | None, method: str | None, exc: BaseException, type_name: str | None = None) -> dict:
    lines = tb.format_exception(type(exc), exc, exc.__traceback__)
    cause = exc.__cause__ or exc.__context__
    return {
        "v": PROTOCOL_VERSION, "id": req_id, "kind": "error", "method": method,
        "error": {
            "type": type_name or _type_name(exc),
            "message": str(exc) if not isinstance(exc, KeyError) else repr(exc.args[0]) if exc.args else "",
            "traceback": [ln.rstrip("\n") for chunk in lines for ln in chunk.splitlines()],
            "cause": f"{_type_name(cause)}: {cause}" if cause is not None else None,
        },
    }


def progress_header(req_id: int, phase: str, done: float, total: float | None, unit: str | None, message: str | None) -> dict:
    return {"v": PROTOCOL_VERSION, "id": req_id, "kind": "progress",
            "progress": {"phase": phase, "done": done, "total": total, "unit": unit, "message": message}}


def _type_name(exc: BaseException) -> str:
    if isinstance(exc, ProtocolViolation):
        return "Protocol"
    if isinstance(exc, Cancelled):
        return "Cancelled"
    if isinstance(exc, DeadlineExceeded):
        return "DeadlineExceeded"
    t = type(exc)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
