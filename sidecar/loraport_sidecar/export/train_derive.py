"""Derive train-step graphs from one another in ONNX instead of tracing each one.

Tracing and converting a graph (make_fx, then torch.onnx's own torch.export and decompositions) is most of an export's
cost, and three of the five graphs are parts of others: eval is grad_step without its backward, forward is its logits,
train_step is grad_step followed by apply_step. So the exporter traces one (loss, gradients, logits) graph and
apply_step, and builds the rest here by pruning and joining nodes: the same operators, so the same numbers (the export
gates then check every graph against PyTorch).

Graphs are loaded without their external data: big initializers stay in the traced graph's data file, which every
derived graph in the same folder references.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import onnx
from onnx import GraphProto, ModelProto


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Names read inside a node's subgraphs (If/Loop bodies read outer values implicitly)."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
        for g in graphs:
            for n in g.node:
                names.update(i for i in n.input if i)
                names |= _subgraph_inputs(n)
    return names


def _load(path: str) -> ModelProto:
    return onnx.load(path, load_external_data=False)


def _dims(value: onnx.ValueInfoProto) -> list[str]:
    return [d.dim_param for d in value.type.tensor_type.shape.dim]


def _rebind_shapes(g: GraphProto, drop: set[str]) -> None:
    """Shape nodes reading a dropped input's symbolic dims read the same dims of a kept input instead.

    The tracer takes a symbolic size from whichever input has it: forward's logits need `seq`, which the traced graph
    reads as Shape(labels)[1:2]; input_ids has the same `seq` (the dims are named at export)."""
    inputs = {i.name: _dims(i) for i in g.input}
    for node in g.node:
        if node.op_type != "Shape" or node.input[0] not in drop:
            continue
        dims = inputs[node.input[0]]
        attrs = {a.name: a for a in node.attribute}
        start = attrs["start"].i if "start" in attrs else 0
        end = attrs["end"].i if "end" in attrs else len(dims)
        start, end = (x + len(dims) if x < 0 else min(x, len(dims)) for x in (start, end))
        want = dims[start:end]
        if not want or not all(want):
            continue  # a fixed dim, or none: nothing to rebind to
        for name, other in inputs.items():
            if name in drop:
                continue
            at = next((k for k in range(len(other) - len(want) + 1) if other[k:k + len(want)] == want), None)
            if at is not None:
                node.input[0] = name
                del node.attribute[:]
                node.attribute.extend([onnx.helper.make_attribute("start", at), onnx.helper.make_attribute("end", at + len(want))])
                break


def prune(model: ModelProto, outputs: Sequence[str], drop_inputs: Iterable[str] = ()) -> ModelProto:
    """`model` computing only `outputs` (in that order): nodes and initializers nothing needs are removed, and the
    graph inputs in `drop_inputs`, which must then be unused, with them (shapes read from them are read from kept
    inputs with the same symbolic dims)."""
    drop = set(drop_inputs)
    if drop:
        model2 = ModelProto()
        model2.CopyFrom(model)
        _rebind_shapes(model2.graph, drop)
        model = model2
    g = model.graph
    have = {o.name: o for o in g.output}
    missing = [o for o in outputs if o not in have]
    if missing:
        raise ValueError(f"graph {g.name!r} has no outputs {missing}")
    needed = set(outputs)
    kept = []
    for node in reversed(g.node):  # ONNX nodes are topologically sorted
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
            needed |= _subgraph_inputs(node)
    used = drop & needed
    if used:
        raise ValueError(f"cannot drop inputs {sorted(used)}: the outputs {list(outputs)} depend on them")
    out = ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(reversed(kept))
    del out.graph.output[:]
    out.graph.output.extend(have[o] for o in outputs)
    inputs = [i for i in g.input if i.name not in drop]
    del out.graph.input[:]
    out.graph.input.extend(inputs)
    inits = [t for t in g.initializer if t.name in needed]
    del out.graph.initializer[:]
    out.graph.initializer.extend(inits)
    vis = [v for v in g.value_info if v.name in needed]
    del out.graph.value_info[:]
    out.graph.value_info.extend(vis)
    return out


def _rename_graph(g: GraphProto, rename) -> None:
    for node in g.node:
        if any(a.HasField("g") or len(a.graphs) for a in node.attribute):
            raise ValueError(f"node {node.name!r} ({node.op_type}) has a subgraph; joining such graphs is not supported")
        node.name = rename(node.name) if node.name else node.name
        for i, x in enumerate(node.input):
            if x:
                node.input[i] = rename(x)
        for i, x in enumerate(node.output):
            if x:
                node.output[i] = rename(x)
    for t in g.initializer:
        t.name = rename(t.name)
    for v in g.value_info:
        v.name = rename(v.name)


def join(first: ModelProto, second: ModelProto, inputs: Sequence[str], outputs: Sequence[str], prefix: str) -> ModelProto:
    """One graph running `first` then `second`, where `second`'s inputs named like `first`'s inputs or outputs are fed
    from them (its other inputs become graph inputs). `second`'s internal names get `prefix` so nothing collides;
    graph inputs and outputs keep their names. `inputs` / `outputs` give the joined graph's order."""
    f, s = first.graph, second.graph
    opsets = {o.domain: o.version for o in first.opset_import}
    for o in second.opset_import:
        if opsets.get(o.domain, o.version) != o.version:
            raise ValueError(f"cannot join graphs of opset {opsets[o.domain]} and {o.version} (domain {o.domain!r})")
    public = {i.name for i in s.input} | {o.name for o in s.output}
    produced = {x for n in f.node for x in n.output} | {i.name for i in f.input} | {t.name for t in f.initializer}
    clash = {o.name for o in s.output} & produced
    if clash:
        raise ValueError(f"cannot join: {sorted(clash)[:3]} are names in both graphs")
    second2 = ModelProto()
    second2.CopyFrom(second)
    _rename_graph(second2.graph, lambda n: n if n in public else prefix + n)
    s2 = second2.graph
    out = ModelProto()
    out.CopyFrom(first)
    g = out.graph
    g.node.extend(s2.node)
    g.initializer.extend(s2.initializer)
    g.value_info.extend(s2.value_info)
    first_outputs = {o.name: o for o in f.output}
    g.value_info.extend(v for name, v in first_outputs.items() if name not in outputs)  # now intermediates
    by_name = {**{i.name: i for i in s.input}, **{i.name: i for i in f.input}}
    out_by_name = {**first_outputs, **{o.name: o for o in s.output}}
    absent = [n for n in inputs if n not in by_name] + [n for n in outputs if n not in out_by_name]
    if absent:
        raise ValueError(f"cannot join: neither graph has {absent}")
    fed = {i.name for i in s.input if i.name in first_outputs or i.name in {x.name for x in f.input}}
    unfed = {i.name for i in s.input} - fed - set(inputs)
    if unfed:
        raise ValueError(f"cannot join: inputs {sorted(unfed)} of the second graph are neither fed nor graph inputs")
    del g.input[:]
    g.input.extend(by_name[n] for n in inputs)
    del g.output[:]
    g.output.extend(out_by_name[n] for n in outputs)
    out.ir_version = max(first.ir_version, second.ir_version)
    return out


def derive(folder: str, traced: str, apply_step: str, specs: dict[str, dict]) -> None:
    """Write grad_step, eval, forward and train_step into `folder` from the traced (loss, grads, logits) graph and
    apply_step. `specs` are the artifact's graph specs (inputs, outputs per graph name)."""
    import os
    grad_logits = _load(os.path.join(folder, traced))
    for name in ("grad_step", "eval", "forward"):
        spec = specs[name]
        drop = [i.name for i in grad_logits.graph.input if i.name not in spec["inputs"]]
        m = prune(grad_logits, spec["outputs"], drop)
        m.graph.name = name
        onnx.save(m, os.path.join(folder, f"{name}.onnx"))
    grad = _load(os.path.join(folder, "grad_step.onnx"))
    apply = _load(os.path.join(folder, apply_step))
    ts = specs["train_step"]
    m = join(grad, apply, ts["inputs"], ts["outputs"], prefix="apply_step/")
    m.graph.name = "train_step"
    onnx.save(m, os.path.join(folder, "train_step.onnx"))
