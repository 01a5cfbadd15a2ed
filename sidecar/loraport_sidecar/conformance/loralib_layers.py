"""loralib's own layers on a model, for the reference numbers.

Linear, transformers Conv1D, MergedLinear and Embedding go through the project's shared wiring
(`loraport_sidecar.reference.loralib_wiring`); Conv2d, which that wiring does not cover, is swapped here for
`loralib.Conv2d`. Layers are created with merging off so the unmerged forward can be taken first; `merge_in_place`
then runs loralib's own merge (`train(False)`).
"""

from __future__ import annotations

import loralib
import torch
from torch import nn

from loraport_sidecar.reference import loralib_wiring

from .errors import CaseError


def _conv2d_layer(name: str, mod: nn.Conv2d, r: int, lora_alpha: float) -> nn.Module:
    ks = mod.kernel_size[0]
    if mod.kernel_size != (ks, ks):
        raise CaseError(None, f"{name}: loralib Conv2d takes square kernels only, got {mod.kernel_size}")
    new = loralib.Conv2d(mod.in_channels, mod.out_channels, ks, r=r, lora_alpha=lora_alpha, merge_weights=False,
                         stride=mod.stride, padding=mod.padding, groups=mod.groups, bias=mod.bias is not None)
    with torch.no_grad():
        new.conv.weight.copy_(mod.weight)
        if mod.bias is not None:
            new.conv.bias.copy_(mod.bias)
    return new.to(mod.weight.dtype)


def apply_loralib(model: nn.Module, targets: list[str], r: int, lora_alpha: float,
                  enable_lora: list[bool] | None = None, fan_in_fan_out: bool | None = None) -> list[str]:
    """Swap every target module for its loralib layer (unmerged); returns the swapped module names."""
    matched = [(n, m) for n, m in model.named_modules() if n and any(n == t or n.endswith("." + t) for t in targets)]
    convs = [(n, m) for n, m in matched if isinstance(m, nn.Conv2d)]
    for name, mod in convs:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, _conv2d_layer(name, mod, r, lora_alpha))
    if len(convs) < len(matched):
        try:
            loralib_wiring.apply_loralib(model, targets=targets, r=r, lora_alpha=lora_alpha, enable_lora=enable_lora,
                                         fan_in_fan_out=fan_in_fan_out, merge_weights=False)
        except (ValueError, TypeError) as e:
            raise CaseError(None, f"loralib: {e}") from None
    if not matched:
        raise CaseError(None, f"no module of the base matches loralib targets {targets}")
    return sorted(lora_layers(model))


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, loralib.LoRALayer) and hasattr(m, "lora_A")}


def load_lora_weights(model: nn.Module, state: dict[str, torch.Tensor], file: str) -> None:
    """Load a loralib state dict (LoRA factors, plus e.g. a classifier head); every key must land in the model."""
    try:
        loralib_wiring.load_loralib_state(model, state)
    except (KeyError, ValueError) as e:
        raise CaseError(file, str(e).strip("'\"")) from None


def merge_in_place(model: nn.Module) -> None:
    """loralib's own merge: turn merging on and call eval() (train(False)), which adds ΔW to each weight once."""
    for m in lora_layers(model).values():
        m.merge_weights = True
        m.merged = False
    model.train(False)


def merged_weight(layer: nn.Module) -> torch.Tensor:
    """The layer's (merged) weight in the base's storage layout (`conv.weight` for loralib Conv2d)."""
    return (layer.conv.weight if hasattr(layer, "conv") else layer.weight).detach().clone()
