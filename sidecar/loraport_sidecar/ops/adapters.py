"""Adapter ops: attachAdapter (PEFT folder, PEFT config + tensors from TS, loralib checkpoint), mergeAndUnload,
saveAdapter."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..registry import op


def _lora_modules(model) -> int:
    return sum(1 for _, m in model.named_modules() if hasattr(m, "lora_A"))


def _lora_params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)


def _attach_peft_folder(entry, src, name):
    from peft import PeftModel
    folder = Path(src["path"])
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{folder}: no adapter_config.json (expected a PEFT adapter folder)")
    if entry.adapter_kind == "peft":
        entry.model.load_adapter(str(folder), adapter_name=name)
        entry.model.set_adapter(name)
    else:
        entry.model = PeftModel.from_pretrained(entry.model, str(folder), adapter_name=name, is_trainable=False)
    return [], []


def _attach_peft_tensors(ctx, entry, src, tensors, name):
    from peft import PeftConfig, PeftModel, set_peft_model_state_dict
    doc = dict(src["config"])
    if str(doc.get("peft_type", "LORA")).upper() != "LORA":
        raise ValueError(f"attachAdapter: config.peft_type is {doc.get('peft_type')!r}; only LORA adapters attach here")
    doc["peft_type"] = "LORA"
    config = PeftConfig.from_peft_type(**doc)
    config.inference_mode = True
    if entry.adapter_kind == "peft":
        entry.model.add_adapter(name, config)
    else:
        entry.model = PeftModel(entry.model, config, adapter_name=name)
    sd = ctx.named_tensors(tensors)
    unnamed = [k for k in sd if k.startswith("#")]
    if unnamed:
        raise ValueError("attachAdapter: every adapter tensor needs its PEFT state-dict key as its name")
    res = set_peft_model_state_dict(entry.model, sd, adapter_name=name)
    entry.model.set_adapter(name)
    missing = [k for k in res.missing_keys if "lora_" in k and f".{name}." in k]
    return missing, list(res.unexpected_keys)


def _read_state(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(p))
    # weights_only: a checkpoint is untrusted; only tensor-rebuilding globals may run.
    return torch.load(str(p), map_location="cpu", weights_only=True)


def _attach_loralib(entry, src, name):
    from ..reference import loralib_wiring
    if entry.adapter_kind is not None:
        raise ValueError(f"attachAdapter: model already has a {entry.adapter_kind} adapter; loralib adapters attach to a plain model")
    state = loralib_wiring.normalize_loralib_state(_read_state(src["path"]))
    # Without explicit targets, adapt exactly the modules the checkpoint has factors for.
    targets = src.get("targets") or sorted({k.rsplit(".", 1)[0] for k in state if k.endswith(".lora_A")})
    if not targets:
        raise ValueError(f"{src['path']}: no '*.lora_A' keys; not a loralib checkpoint")
    kwargs = {"targets": targets, "r": src["r"], "lora_alpha": src["alpha"]}
    if "enableLora" in src:
        kwargs["enable_lora"] = src["enableLora"]
    if "fanInFanOut" in src:
        kwargs["fan_in_fan_out"] = src["fanInFanOut"]
    loralib_wiring.apply_loralib(entry.model, **kwargs)
    res = loralib_wiring.load_loralib_state(entry.model, state)
    entry.loralib_meta = {"path": src["path"], **kwargs}
    return list(res["missing_lora"]), []


@op("attachAdapter")
def attach_adapter(ctx, params, tensors):
    entry = ctx.models.get(params["handle"])
    src = params["source"]
    name = params.get("adapterName", "default")
    if entry.adapter_kind == "loralib":
        raise ValueError("attachAdapter: this model already carries a loralib adapter; load the model again to attach another")
    ctx.progress(0, 1, f"attaching {src['kind']} adapter", phase="attachAdapter")
    if src["kind"] == "peft":
        missing, unexpected = _attach_peft_folder(entry, src, name)
        kind = "peft"
    elif src["kind"] == "tensors":
        missing, unexpected = _attach_peft_tensors(ctx, entry, src, tensors, name)
        kind = "peft"
    else:
        missing, unexpected = _attach_loralib(entry, src, name)
        kind = "loralib"
    entry.adapter_kind = kind
    entry.adapters.append(name)
    entry.model.eval()
    ctx.progress(1, 1, name, phase="attachAdapter")
    return {"adapterName": name, "kind": kind, "loraModules": _lora_modules(entry.model),
            "loraParameters": _lora_params(entry.model), "missingKeys": missing, "unexpectedKeys": unexpected}, None


def _unload_loralib(model) -> None:
    """Merge through loralib's own path (eval() merges in place), then swap each loralib layer for the plain
    module it replaced, holding the merged weight — the model is then the base architecture again."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    from ..reference import loralib_wiring
    model.eval()
    for name, layer in loralib_wiring.loralib_layers(model).items():
        if getattr(layer, "r", 0) > 0 and not getattr(layer, "merged", False):
            raise RuntimeError(f"{name}: loralib did not merge on eval() (merge_weights=False)")
        w = layer.weight.detach()
        if isinstance(layer, nn.Embedding):
            plain = nn.Embedding(layer.num_embeddings, layer.embedding_dim, padding_idx=layer.padding_idx)
            plain.weight.data.copy_(w)
        elif getattr(layer, "fan_in_fan_out", False):
            # Stored [in, out]: the transformers Conv1D layout it came from.
            plain = Conv1D(w.shape[1], w.shape[0])
            plain.weight.data.copy_(w)
            if layer.bias is not None:
                plain.bias.data.copy_(layer.bias.detach())
            else:
                plain.bias.data.zero_()
        else:
            plain = nn.Linear(w.shape[1], w.shape[0], bias=layer.bias is not None)
            plain.weight.data.copy_(w)
            if layer.bias is not None:
                plain.bias.data.copy_(layer.bias.detach())
        plain.to(device=w.device, dtype=w.dtype)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, plain)


@op("mergeAndUnload")
def merge_and_unload(ctx, params, tensors):
    entry = ctx.models.get(params["handle"])
    n = _lora_modules(entry.model)
    if entry.adapter_kind == "peft":
        entry.model = entry.model.merge_and_unload(progressbar=False)
    elif entry.adapter_kind == "loralib":
        _unload_loralib(entry.model)
    else:
        raise ValueError(f"mergeAndUnload: model {params['handle']} has no adapter attached")
    entry.adapter_kind = None
    entry.adapters = []
    entry.model.eval()
    return {"mergedModules": n}, None


@op("saveAdapter")
def save_adapter(ctx, params, tensors):
    entry = ctx.models.get(params["handle"])
    dest = Path(params["path"])
    if dest.exists() and not params.get("overwrite"):
        raise FileExistsError(f"{dest}: already exists (pass overwrite to replace it)")
    if entry.adapter_kind is None:
        raise ValueError(f"saveAdapter: model {params['handle']} has no adapter attached")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the destination, then renamed: a reader never sees a half-written adapter.
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        if entry.adapter_kind == "peft":
            name = params.get("adapterName", entry.adapters[-1])
            entry.model.save_pretrained(str(tmp), selected_adapters=[name], safe_serialization=True)
            src = tmp / name if name != "default" else tmp
        else:
            from safetensors.torch import save_file
            sd = {k: v.detach().cpu().contiguous() for k, v in entry.model.state_dict().items() if "lora_" in k}
            save_file(sd, str(tmp / "lora.safetensors"), metadata={"format": "pt", "source": "loralib"})
            src = tmp
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        os.replace(src, dest)
        files = sorted(p.name for p in dest.iterdir())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"path": str(dest), "files": files}, None
