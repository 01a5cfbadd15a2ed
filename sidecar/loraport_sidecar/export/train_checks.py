"""The export gates of a train-step artifact. Each one catches a way an export silently corrupts training.

- only `ai.onnx` operators (ORT's training ops do not load in inference builds, onnxruntime-node included);
- no `NegativeLogLikelihoodLoss` (the exporter fakes its total weight: masked-label gradients come out ×16);
- IR version <= 13 (the newest onnxruntime-node reads);
- step-1 gradients of the ONNX graph equal PyTorch autograd on the real PEFT model within a relative tolerance,
  on two batch shapes with masked labels. Loss and updated parameters would not catch the ×16 bug (AdamW is
  nearly scale-invariant), gradients do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import onnx
import torch

MAX_IR_VERSION = 13
STANDARD_DOMAINS = ("", "ai.onnx")


class ExportCheckError(RuntimeError):
    """An exported graph failed a gate; the artifact is not written. Messages say what is wrong and what to do, with
    no Python class names (they reach the CLI as they are)."""


def check_graph_ops(path: str) -> dict:
    """Domains, forbidden ops and IR version of one graph; raises ExportCheckError on the first violation."""
    model = onnx.load(path, load_external_data=False)
    name = path.rsplit("/", 1)[-1]
    if model.ir_version > MAX_IR_VERSION:
        raise ExportCheckError(f"{name}: IR version {model.ir_version} > {MAX_IR_VERSION}, which onnxruntime 1.30 refuses; "
                               f"use the torch / onnx versions pinned in sidecar/requirements.txt")
    bad_opsets = [o.domain for o in model.opset_import if o.domain not in STANDARD_DOMAINS]
    if bad_opsets:
        raise ExportCheckError(f"{name}: uses non-standard opset domains {bad_opsets}, which onnxruntime-node cannot run; only ai.onnx "
                               f"operators are allowed (a model with custom ops cannot be exported for training; try --engine torch)")
    if len(model.functions):
        raise ExportCheckError(f"{name}: has {len(model.functions)} local functions where plain ai.onnx nodes are needed "
                               f"(an exporter version change?); use the versions pinned in sidecar/requirements.txt")
    op_types: set[str] = set()
    for node in model.graph.node:
        if node.domain not in STANDARD_DOMAINS:
            raise ExportCheckError(f"{name}: node {node.name!r} uses {node.domain}::{node.op_type}, which onnxruntime-node cannot run; "
                                   f"only ai.onnx operators are allowed (try --engine torch for this model)")
        if node.op_type == "NegativeLogLikelihoodLoss":
            raise ExportCheckError(f"{name}: contains NegativeLogLikelihoodLoss, whose exported total weight corrupts masked-label "
                                   f"gradients; the exporter must decompose nll_loss (report this as a loraport bug)")
        op_types.add(node.op_type)
    opset = next((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), None)
    return {"file": name, "ir_version": model.ir_version, "opset": opset, "nodes": len(model.graph.node), "op_types": sorted(op_types)}


def check_dynamic_batch(path: str, names: Sequence[str]) -> None:
    """The batch inputs must keep symbolic dims: a tracer that specialises them gives a graph that only takes the
    example's batch size and sequence length."""
    model = onnx.load(path, load_external_data=False)
    file = path.rsplit("/", 1)[-1]
    for inp in model.graph.input:
        if inp.name in names:
            dims = inp.type.tensor_type.shape.dim
            fixed = [i for i, d in enumerate(dims) if not d.dim_param]
            if fixed:
                shape = [d.dim_param or d.dim_value for d in dims]
                raise ExportCheckError(f"{file}: input {inp.name} has fixed dims {shape}, so the graph would take only that batch size and "
                                       f"length; the tracer specialised them (report this as a loraport bug, naming the model type; "
                                       f"--engine torch trains it meanwhile)")


@dataclass
class GradComparison:
    shape: tuple[int, int]
    masked_labels: int
    loss_abs: float
    loss_rel: float
    max_abs: float
    max_rel: float
    worst: str

    def as_dict(self) -> dict:
        return {"shape": list(self.shape), "masked_labels": self.masked_labels, "loss_abs_err": self.loss_abs, "loss_rel_err": self.loss_rel,
                "grad_max_abs_err": self.max_abs, "grad_max_rel_err": self.max_rel, "worst_param": self.worst}


def compare_grads(names: Sequence[str], got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> tuple[float, float, str]:
    """Max abs error, and max relative error per tensor (|Δ|max / |want|max, so near-zero entries do not blow up)."""
    max_abs, max_rel, worst = 0.0, 0.0, ""
    for name, g, w in zip(names, got, want):
        diff = float(np.abs(g - w).max()) if g.size else 0.0
        scale = float(np.abs(w).max()) if w.size else 0.0
        rel = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
        max_abs = max(max_abs, diff)
        if rel >= max_rel:
            max_rel, worst = rel, name
    return max_abs, max_rel, worst
