"""Real ``loralib`` layers on Hugging Face models: the reference for loraport's loralib math and conversion.

loralib ships layers, not a model patcher, so this module does what the paper's example code did by hand:
replace target modules with ``lora.Linear`` / ``lora.MergedLinear`` / ``lora.Embedding`` carrying the base
weights, load a loralib state dict, and take merged weights through loralib's own merge path
(``model.eval()`` → ``train(False)`` merges in place).

API (reused by the sidecar and the conformance suite)::

    apply_loralib(model, targets=["c_attn"], r=4, lora_alpha=32, enable_lora=[True, False, True])
    load_loralib_state(model, torch.load(path, weights_only=True))
    loralib_merged_weights(model)  # {"transformer.h.0.attn.c_attn.weight": tensor, ...}

    module_tree({"transformer.h.0.attn.c_attn": ("conv1d", 1024, 3072)}, seed=0)  # a bare tree of the right shapes
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import loralib as lora
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


def _matches(name: str, targets: Sequence[str]) -> bool:
    # Same rule as PEFT's list form: the exact module name, or a ".<target>" suffix.
    return any(name == t or name.endswith("." + t) for t in targets)


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _loralib_layer(module: nn.Module, name: str, *, r: int, lora_alpha: int | float, enable_lora: Sequence[bool] | None,
                   fan_in_fan_out: bool | None, lora_dropout: float, merge_weights: bool) -> nn.Module:
    """One loralib layer holding `module`'s weights (copied, not shared)."""
    if isinstance(module, nn.Embedding):
        layer = lora.Embedding(module.num_embeddings, module.embedding_dim, r=r, lora_alpha=lora_alpha,
                               merge_weights=merge_weights, padding_idx=module.padding_idx)
        with torch.no_grad():
            layer.weight.copy_(module.weight)
        return layer
    if isinstance(module, Conv1D):
        # transformers Conv1D stores weight [in, out]; loralib with fan_in_fan_out=True stores the same layout.
        in_f, out_f = module.weight.shape
        ffo = True if fan_in_fan_out is None else fan_in_fan_out
        if not ffo:
            raise ValueError(f"{name}: a transformers Conv1D stores [in, out]; it needs fan_in_fan_out=True")
    elif isinstance(module, nn.Linear):
        in_f, out_f = module.in_features, module.out_features
        ffo = False if fan_in_fan_out is None else fan_in_fan_out
    else:
        raise TypeError(f"{name}: {type(module).__name__} is not an nn.Linear, transformers Conv1D or nn.Embedding")
    bias = module.bias is not None
    kwargs = dict(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, fan_in_fan_out=ffo, merge_weights=merge_weights, bias=bias)
    if enable_lora is not None:
        layer = lora.MergedLinear(in_f, out_f, enable_lora=list(enable_lora), **kwargs)
    else:
        layer = lora.Linear(in_f, out_f, **kwargs)
    with torch.no_grad():
        w = module.weight
        # Stored layout: [in, out] when fan_in_fan_out, else [out, in]; nn.Linear is [out, in], Conv1D [in, out].
        src_is_in_out = isinstance(module, Conv1D)
        layer.weight.copy_(w if src_is_in_out == ffo else w.t())
        if bias:
            layer.bias.copy_(module.bias)
    return layer


def apply_loralib(model: nn.Module, *, targets: Sequence[str], r: int, lora_alpha: int | float,
                  enable_lora: Sequence[bool] | None = None, fan_in_fan_out: bool | None = None,
                  lora_dropout: float = 0.0, merge_weights: bool = True) -> nn.Module:
    """Replace every module matching `targets` (exact name or `.suffix`) with a real loralib layer, in place.

    nn.Linear → ``lora.Linear``; transformers Conv1D (GPT-2 c_attn) → ``lora.Linear``/``lora.MergedLinear`` with
    ``fan_in_fan_out=True``; nn.Embedding → ``lora.Embedding``. With `enable_lora`, Linear/Conv1D targets become
    ``lora.MergedLinear(enable_lora=...)``. `fan_in_fan_out=None` picks it from the module type. Returns the model.
    Raises ValueError when nothing matched.
    """
    names = [n for n, m in model.named_modules() if n and _matches(n, targets) and isinstance(m, (nn.Linear, Conv1D, nn.Embedding))]
    if not names:
        raise ValueError(f"no module matches targets {list(targets)}")
    for name in names:
        module = model.get_submodule(name)
        _set_module(model, name, _loralib_layer(module, name, r=r, lora_alpha=lora_alpha, enable_lora=enable_lora,
                                                fan_in_fan_out=fan_in_fan_out, lora_dropout=lora_dropout,
                                                merge_weights=merge_weights))
    return model


def normalize_loralib_state(state: Mapping[str, torch.Tensor] | Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Unwrap ``{'model_state_dict': ...}`` and strip the DistributedDataParallel ``module.`` prefix."""
    if "model_state_dict" in state and isinstance(state["model_state_dict"], Mapping):
        state = state["model_state_dict"]
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def load_loralib_state(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, list[str]]:
    """Load a loralib checkpoint (LoRA factors, plus e.g. a classifier head) into `model`.

    Every key of the checkpoint must land in the model (an unexpected key raises KeyError naming it); the model's
    other parameters keep their values. Returns ``{"loaded": [...], "missing_lora": [...]}`` where
    ``missing_lora`` lists loralib parameters of the model the checkpoint did not provide.
    """
    state = normalize_loralib_state(state_dict)
    own = model.state_dict()
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise KeyError(f"checkpoint keys not in the model: {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}")
    for k, v in state.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise ValueError(f"{k}: checkpoint shape {tuple(v.shape)} != model shape {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=False)
    missing_lora = [k for k in own if ("lora_A" in k or "lora_B" in k) and k not in state]
    return {"loaded": list(state), "missing_lora": missing_lora}


def loralib_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The loralib layers of a model by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, lora.LoRALayer)}


def loralib_merged_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Merged weights of every loralib layer, through loralib's own path: ``model.eval()`` merges in place.

    Keys are ``<module>.weight`` in the layer's stored layout ([in, out] for fan_in_fan_out layers, as the base
    Conv1D stores them). Leaves the model in eval mode (merged).
    """
    model.eval()
    out = {}
    for name, m in loralib_layers(model).items():
        if not getattr(m, "merged", False) and getattr(m, "merge_weights", True):
            raise RuntimeError(f"{name}: loralib did not merge on eval()")
        out[f"{name}.weight"] = m.weight.detach().clone()
    return out


def module_tree(modules: Mapping[str, tuple[str, int, int]], *, seed: int = 0, bias: bool = True) -> nn.Module:
    """A bare nn.Module tree with leaves at the given dotted paths and seeded N(0, 0.02) weights.

    `modules`: path → (kind, in, out) with kind "linear" (nn.Linear), "conv1d" (transformers Conv1D) or
    "embedding" (in = num_embeddings, out = dim). Parity of merged weights needs only the adapted modules
    with the right shapes and names; this builds exactly those, cheaply.
    """
    root = nn.Module()
    gen = torch.Generator().manual_seed(seed)
    for path in sorted(modules):
        kind, n_in, n_out = modules[path]
        parent = root
        parts = path.split(".")
        for p in parts[:-1]:
            if not hasattr(parent, p):
                parent.add_module(p, nn.Module())
            parent = getattr(parent, p)
        if kind == "linear":
            leaf = nn.Linear(n_in, n_out, bias=bias)
        elif kind == "conv1d":
            leaf = Conv1D(n_out, n_in)
        elif kind == "embedding":
            leaf = nn.Embedding(n_in, n_out)
        else:
            raise ValueError(f"{path}: unknown kind {kind!r}")
        with torch.no_grad():
            for _, prm in sorted(leaf.named_parameters()):
                prm.copy_(torch.randn(prm.shape, generator=gen) * 0.02)
        parent.add_module(parts[-1], leaf)
    root.eval()
    return root


def tree_weights(model: nn.Module, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """``<name>.weight`` of the given modules, cloned (for comparing before/after merges)."""
    return {f"{n}.weight": model.get_submodule(n).weight.detach().clone() for n in names}
