"""Checkpoints and the adapter folder, written by rank 0, atomically (temp file + rename).

The checkpoint is the ORT engine's file (sdk/src/training/state.ts): one safetensors file with `p.<key>`,
`m.<key>`, `v.<key>` (F32; m, v = AdamW's exp_avg, exp_avg_sq) and `step`, `fit_start_step` in the metadata, so a
checkpoint of either engine resumes in the other.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import ConfigError

FORMAT = "loraport-train-checkpoint"


def _atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=folder)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().to(torch.float32) for k, v in tensors.items()}, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_checkpoint(path: str, keys: list[str], params: list[torch.Tensor], m: list[torch.Tensor], v: list[torch.Tensor],
                     step: int, fit_start_step: int) -> None:
    tensors = {}
    for k, p, a, b in zip(keys, params, m, v):
        tensors[f"p.{k}"], tensors[f"m.{k}"], tensors[f"v.{k}"] = p, a, b
    _atomic_save(tensors, {"format": FORMAT, "step": str(step), "fit_start_step": str(fit_start_step)}, path)


def read_checkpoint(path: str, keys: list[str], shapes: list[torch.Size]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], int, int]:
    """(params, exp_avg, exp_avg_sq, step, fit_start_step); ConfigError naming the tensor when it is not this run's."""
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ConfigError(f"{path}: metadata.format: expected {FORMAT!r}, got {meta.get('format')!r} (not a loraport training checkpoint)")
        have = set(f.keys())
        out: list[list[torch.Tensor]] = [[], [], []]
        for k, shape in zip(keys, shapes):
            for i, prefix in enumerate("pmv"):
                name = f"{prefix}.{k}"
                if name not in have:
                    raise ConfigError(f"{path}: tensor {name!r} missing (a checkpoint of another model or LoRA config?)")
                t = f.get_tensor(name)
                if t.shape != shape:
                    raise ConfigError(f"{path}: tensor {name!r}: expected shape {list(shape)}, got {list(t.shape)}")
                out[i].append(t)
        try:
            step, start = int(meta["step"]), int(meta["fit_start_step"])
        except (KeyError, ValueError):
            raise ConfigError(f"{path}: metadata.step / fit_start_step: expected integers") from None
    return out[0], out[1], out[2], step, start


def write_adapter(out: str, peft_config, tensors: dict[str, torch.Tensor]) -> None:
    """A PEFT folder (adapter_config.json + adapter_model.safetensors). A new folder appears whole (renamed from a
    sibling temp folder); into an existing one each file is replaced atomically."""
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".adapter-", dir=parent)
    try:
        peft_config.save_pretrained(tmp)
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, os.path.join(tmp, "adapter_model.safetensors"), metadata={"format": "pt"})
        if not os.path.exists(out):
            os.rename(tmp, out)
            return
        for name in os.listdir(tmp):
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_json(path: str) -> dict:
    with open(path, encoding="utf8") as f:
        return json.load(f)
