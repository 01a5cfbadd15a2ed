"""The checkpoints published with the LoRA paper: safe loading, key normalisation and the exact PEFT recipe.

The recipe (../shared/notes/peft-format.md §5) is implemented here in torch only as a reference check of the
conversion: loraport's own converter (TS) is what the suite tests, and its output is fed in with --ts-adapter.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from safetensors.torch import save_file

from .errors import CaseError, ReferenceMissing


def load_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """A loralib state dict, read with weights_only=True (no pickle code runs), `model_state_dict` and `module.` removed."""
    if not os.path.isfile(path):
        raise ReferenceMissing(path, "published checkpoint not found (see sdk/src/reference.ts for where to get it)")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "model_state_dict" in sd:
        sd = sd["model_state_dict"]
    if not isinstance(sd, dict):
        raise CaseError(path, "expected a state dict of tensors")
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise CaseError(path, f"entry '{k}' is not a tensor")
        out[k.removeprefix("module.")] = v.float().contiguous()
    return out


def split_lora(sd: dict[str, torch.Tensor]) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, torch.Tensor]]:
    """(module → (A, B)) for every `<module>.lora_A/lora_B` pair, and the remaining (non-LoRA) tensors."""
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    rest = {}
    for k, v in sd.items():
        if k.endswith(".lora_A"):
            mod = k[: -len(".lora_A")]
            pairs[mod] = (v, sd[f"{mod}.lora_B"])
        elif not k.endswith(".lora_B"):
            rest[k] = v
    return pairs, rest


def recipe_to_peft(pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], extra: dict[str, torch.Tensor], lora: dict[str, Any],
                   folder: str, keep_module=lambda name: True, embeddings: frozenset[str] = frozenset()) -> None:
    """Write a PEFT adapter folder equal to the loralib adapter (MergedLinear → rank k·r with block B, alpha k·alpha)."""
    r, alpha = int(lora["r"]), float(lora["lora_alpha"])
    enable = lora.get("enable_lora")
    tensors: dict[str, torch.Tensor] = {}
    for mod, (a, b) in pairs.items():
        if not keep_module(mod):
            continue
        if enable:
            k = sum(bool(e) for e in enable)
            d = b.shape[0] // k
            full = torch.zeros(d * len(enable), k * r)
            g = 0
            for j, on in enumerate(enable):
                if on:
                    full[j * d:(j + 1) * d, g * r:(g + 1) * r] = b[g * d:(g + 1) * d]
                    g += 1
            b = full
        if mod in embeddings:  # loralib Embedding A [r, N], B [D, r] are PEFT's lora_embedding_A/B as they are
            tensors[f"base_model.model.{mod}.lora_embedding_A"] = a.contiguous()
            tensors[f"base_model.model.{mod}.lora_embedding_B"] = b.contiguous()
        else:
            tensors[f"base_model.model.{mod}.lora_A.weight"] = a.contiguous()
            tensors[f"base_model.model.{mod}.lora_B.weight"] = b.contiguous()
    for k, v in extra.items():
        tensors[f"base_model.model.{k}"] = v.contiguous()
    k_blocks = sum(bool(e) for e in enable) if enable else 1
    cfg: dict[str, Any] = {
        "peft_type": "LORA", "r": r * k_blocks, "lora_alpha": alpha * k_blocks, "target_modules": list(lora["targets"]),
        "fan_in_fan_out": bool(lora.get("fan_in_fan_out", False)), "lora_dropout": 0.0, "bias": "none",
        "init_lora_weights": True, "use_rslora": False, "use_dora": False, "inference_mode": True,
    }
    heads = sorted({k.split(".")[0] for k in extra})
    if heads:
        cfg["modules_to_save"] = heads
        cfg["task_type"] = "SEQ_CLS"
    os.makedirs(folder, exist_ok=True)
    save_file(tensors, os.path.join(folder, "adapter_model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(folder, "adapter_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
