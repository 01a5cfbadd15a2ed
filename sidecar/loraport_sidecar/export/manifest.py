"""The manifest written beside an exported model: what the graph's inputs mean, and which base it came from.

Schema: schemas/onnx-manifest.schema.json (validated in the tests and by the TS runtime on load).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

MANIFEST_NAME = "loraport-onnx.json"
MODEL_NAME = "model.onnx"
HEADS_NAME = "head-defaults.safetensors"
FORMAT = "loraport-onnx"
VERSION = 1

_ONNX_TYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 9: "bool", 11: "float64"}


def base_checksum(model: nn.Module) -> str:
    """sha256 over the base weights (sorted names, dtype, shape, float32 bytes): independent of file layout and
    of whether the checkpoint was F16 or sharded, so the same base gives the same checksum."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to(torch.float32).contiguous()
        h.update(f"{name}|{list(t.shape)}\n".encode())
        h.update(t.numpy().tobytes())
    return "sha256:" + h.hexdigest()


def _value_info(v: Any) -> dict[str, Any]:
    tt = v.type.tensor_type
    shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in tt.shape.dim]
    return {"name": v.name, "dtype": _ONNX_TYPES.get(tt.elem_type, str(tt.elem_type)), "shape": shape}


def build_manifest(*, model_path: Path, mode: str, config: Any, opset: int, checksum: str, source_dtype: str,
                   lora: list[dict[str, Any]], adapter: dict[str, Any] | None, targets: list[str], base_path: str,
                   heads: list[dict[str, Any]] | None = None, generation: dict[str, Any] | None = None) -> dict[str, Any]:
    import onnx

    m = onnx.load(str(model_path), load_external_data=False)
    external = sorted({e.value for i in m.graph.initializer for e in i.external_data if e.key == "location"})
    cfg = config.to_dict()
    task = "sequence-classification" if any(a.endswith("ForSequenceClassification") for a in cfg.get("architectures") or []) else "causal-lm"
    return {
        "format": FORMAT,
        "version": VERSION,
        "mode": mode,
        "model_file": MODEL_NAME,
        "external_data": external,
        "opset": opset,
        "ir_version": int(m.ir_version),
        "task": task,
        "model_type": cfg.get("model_type", ""),
        "config": cfg,
        "base": {"path": base_path, "checksum": checksum, "source_dtype": source_dtype},
        "targets": list(targets),
        "inputs": [_value_info(v) for v in m.graph.input],
        "outputs": [_value_info(v) for v in m.graph.output],
        "lora": lora,
        # adapter-inputs: the tables' row-slot input (see onnx_export's LoraSlot).
        "lora_index_input": "lora_index" if mode == "adapter-inputs" else None,
        "heads": heads or [],
        "head_defaults_file": HEADS_NAME if heads else None,
        "adapter": adapter,
        "generation": generation,
    }
