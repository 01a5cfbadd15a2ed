"""Base models for the cases: seeded models of the right architecture and shapes, or real weights from a folder."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any
from unittest import mock

import torch
from torch import nn

from loraport_sidecar.reference import tiny_models

from .errors import CaseError

TORCH_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


class ConvNet(nn.Module):
    """A small image model with two 3×3 Conv2d layers and a linear head, for the Conv2d cases."""

    def __init__(self, channels: int = 8, classes: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.head = nn.Linear(channels, classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(pixel_values))
        h = torch.relu(self.conv2(h))
        return self.head(h.mean(dim=(2, 3)))


def build_base(spec: dict[str, Any], base_dir: str | None = None) -> nn.Module:
    """The case's base: `base_dir` (real weights) when given, else the seeded builder named by `family`."""
    family = spec["family"]
    kwargs = {k: v for k, v in spec.items() if k not in ("family", "dtype")}
    if base_dir:
        model = load_hf_folder(base_dir)
    elif family == "convnet":
        model = ConvNet(**{k: v for k, v in kwargs.items() if k != "seed"})
        tiny_models._seeded(model, kwargs.get("seed", 0))  # same seeding rule as the transformers builders
    else:
        try:
            model = _cached_build(family, kwargs) if family in CACHED_FAMILIES else tiny_models.build(family, **kwargs)
        except (ValueError, TypeError) as e:
            raise CaseError(None, f"base: {e}") from None
    model.eval()
    dtype = spec.get("dtype", "F32")
    if dtype not in TORCH_DTYPES:
        raise CaseError(None, f"base.dtype is {dtype!r}; expected one of {sorted(TORCH_DTYPES)}")
    return model.to(TORCH_DTYPES[dtype])


# Seeding GPT-2 Medium's 355M parameters takes ~20 s per run; the seeded weights are cached (keyed by the
# builder's source, its arguments and the library versions) under $LORAPORT_CACHE_DIR or .loraport-cache/.
CACHED_FAMILIES = ("gpt2-medium", "roberta-base")


def _cache_path(family: str, kwargs: dict[str, Any]) -> str:
    import transformers

    with open(tiny_models.__file__, "rb") as f:
        src = f.read()
    key = hashlib.sha256(json.dumps([family, kwargs, torch.__version__, transformers.__version__], sort_keys=True).encode() + src).hexdigest()[:16]
    root = os.environ.get("LORAPORT_CACHE_DIR") or os.path.join(os.path.dirname(__file__), "../../../.loraport-cache")
    return os.path.join(root, "conformance", f"{family}-{key}.safetensors")


def _cached_build(family: str, kwargs: dict[str, Any]) -> nn.Module:
    from safetensors.torch import load_file, save_file
    from transformers.initialization import no_init_weights

    path = _cache_path(family, kwargs)
    if os.path.isfile(path):
        # Same architecture without paying for any init (tiny_models' seeding is skipped), then the cached values.
        with no_init_weights(), mock.patch.object(tiny_models, "_seeded", lambda m, seed: m):
            model = tiny_models.build(family, **kwargs)
        state = load_file(path)
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = {k for k in missing if k.endswith("lm_head.weight")}
        if unexpected or set(missing) - tied:
            raise CaseError(path, f"cached base does not fit the model (missing {sorted(set(missing) - tied)[:3]}, unexpected {unexpected[:3]}); delete the file")
        model.tie_weights()
        return model.eval()
    model = tiny_models.build(family, **kwargs)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    seen: set[int] = set()
    state = {}
    for k, v in model.state_dict().items():  # tied tensors once (safetensors refuses shared storage)
        if v.data_ptr() not in seen:
            seen.add(v.data_ptr())
            state[k] = v.contiguous()
    tmp = f"{path}.{os.getpid()}.tmp"
    save_file(state, tmp)
    os.replace(tmp, path)
    return model


def load_hf_folder(folder: str) -> nn.Module:
    """A Hugging Face model folder (config.json + safetensors) with the architecture its config names."""
    import transformers

    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise CaseError(folder, "not a Hugging Face model folder: config.json is missing")
    cfg = transformers.AutoConfig.from_pretrained(folder)
    arch = (cfg.architectures or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None:
        raise CaseError(os.path.join(folder, "config.json"), f"architectures names {arch!r}, which transformers does not provide")
    return cls.from_pretrained(folder, dtype=torch.float32).eval()


def make_inputs(spec: dict[str, Any], family: str) -> list[dict[str, torch.Tensor]]:
    """The case's fixed inputs: explicit token batches (with attention masks, padded batches included) or seeded pixels."""
    batches = []
    for i, b in enumerate(spec.get("batches", [])):
        if "pixel_values" in b:
            pv = b["pixel_values"]
            gen = torch.Generator().manual_seed(int(pv.get("seed", i)))
            batches.append({"pixel_values": torch.randn(pv["shape"], generator=gen)})
            continue
        ids = torch.tensor(b["input_ids"], dtype=torch.long)
        mask = torch.tensor(b["attention_mask"], dtype=torch.long) if "attention_mask" in b else torch.ones_like(ids)
        if mask.shape != ids.shape:
            raise CaseError(None, f"forward.batches[{i}]: attention_mask shape {list(mask.shape)} differs from input_ids {list(ids.shape)}")
        batches.append({"input_ids": ids, "attention_mask": mask})
    return batches


def save_hf_folder(model: nn.Module, folder: str) -> None:
    tiny_models.save(model, folder)
