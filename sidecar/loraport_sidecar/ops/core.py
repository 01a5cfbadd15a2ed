"""Handshake op: protocol version and capabilities."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform

import torch

from ..protocol import PROTOCOL_VERSION
from ..registry import OPS, op


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _devices() -> list[str]:
    devs = ["cpu"]
    if torch.cuda.is_available():
        devs += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devs.append("mps")
    return devs


@op("hello")
def hello(ctx, params, tensors):
    return {
        "protocol": PROTOCOL_VERSION, "pid": os.getpid(), "python": platform.python_version(),
        "torch": torch.__version__, "transformers": _version("transformers"), "peft": _version("peft"),
        "loralib": _version("loralib"), "devices": _devices(), "ops": sorted({*OPS, "ping"}), "limits": ctx.limits,
    }, None
