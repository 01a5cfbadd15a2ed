"""Default values for an adapter-inputs graph's LoRA inputs, for ONNX Runtime's own adapter mechanism.

ONNX Runtime's Python ``InferenceSession.run`` checks that every required input is fed before it applies the active
adapters of ``RunOptions.add_active_adapter``, so an ``.onnx_adapter`` can only stand in for inputs that have an
initializer of the same name (ORT calls them overridable initializers; Olive exports LoRA weights this way). These
defaults make that so: one-slot, rank-1 zero factor tables (the base model) and the base's own head values.

onnxruntime-node, on the other hand, silently ignores feeds for such inputs (measured with 1.30: the logits did not
change), so loraport's own runtime needs the plain export and refuses one with defaults (manifest ``lora_defaults``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def add_lora_defaults(model_path: Path, lora: list[dict[str, Any]], heads: list[dict[str, Any]], head_values: dict[str, Any],
                      tokens: list[dict[str, Any]] | None = None) -> None:
    """Add an initializer for every LoRA factor-table input, head input and trainable-token input (`tokens`: one
    slot, one id -1 that matches no token) of the graph at `model_path`, in place (the file is the exporter's temp
    copy). External weights stay where they are; the defaults are small and inline."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(model_path), load_external_data=False)
    inputs = {i.name for i in m.graph.input}
    for e in lora:
        for name, shape in ((e["a_input"], (1, 1, e["in_features"])), (e["b_input"], (1, e["out_features"], 1))):
            if name not in inputs:
                raise RuntimeError(f"graph lacks LoRA input {name!r}")
            m.graph.initializer.append(numpy_helper.from_array(np.zeros(shape, dtype=np.float32), name))
    for t in tokens or []:
        m.graph.initializer.append(numpy_helper.from_array(np.full((1, 1), -1, dtype=np.int64), t["ids_input"]))
        m.graph.initializer.append(numpy_helper.from_array(np.zeros((1, 1, t["embedding_dim"]), dtype=np.float32), t["rows_input"]))
    for h in heads:
        value = head_values[h["param"]].detach().to(dtype=__import__("torch").float32).cpu().numpy()
        m.graph.initializer.append(numpy_helper.from_array(value, h["input"]))
    onnx.save(m, str(model_path))
