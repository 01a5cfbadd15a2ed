"""Model ops: loadModel, forward, getTensors, releaseModel."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..handles import ModelEntry
from ..protocol import DTYPE_TO_TORCH_NAME, TORCH_NAME_TO_DTYPE
from ..registry import op


def _torch_dtype(name: str | None) -> torch.dtype | None:
    return getattr(torch, DTYPE_TO_TORCH_NAME[name]) if name else None


def _arch_class(config_doc: dict, where: str):
    import transformers
    archs = config_doc.get("architectures") or []
    if not archs:
        raise ValueError(f"{where}: config has no 'architectures' entry; cannot tell which model class to build")
    cls = getattr(transformers, archs[0], None)
    if cls is None:
        raise ValueError(f"{where}: architecture {archs[0]!r} is not a transformers model class")
    return cls


def _load_builtin(ctx, src):
    from ..reference import tiny_models
    return tiny_models.build(src["family"], **src.get("kwargs", {}))


def _load_folder(ctx, src):
    folder = Path(src["path"])
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json (expected a Hugging Face model folder)")
    if not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(f"{folder}: no .safetensors weights (pickle .bin weights are refused: they can run code)")
    cls = _arch_class(json.loads(cfg_path.read_text()), str(cfg_path))
    return cls.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)


def _load_config(ctx, src):
    import transformers
    from safetensors.torch import load_file
    cfg_path, weights = Path(src["config"]), Path(src["weights"])
    for p in (cfg_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
    doc = json.loads(cfg_path.read_text())
    cls = _arch_class(doc, str(cfg_path))
    config = transformers.AutoConfig.for_model(**doc)
    model = cls(config)
    ctx.progress(1, 3, "reading weights", phase="loadModel")
    sd = load_file(str(weights))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    model.tie_weights()
    loaded = {p.data_ptr() for k, p in model.state_dict().items() if k in sd}
    missing = [k for k in missing if model.state_dict()[k].data_ptr() not in loaded]  # tied weights are not missing
    if src.get("strict", True) and (missing or unexpected):
        raise KeyError(f"{weights}: state dict does not match {cls.__name__}: missing {missing[:10]}, unexpected {list(unexpected)[:10]}")
    return model


@op("loadModel")
def load_model(ctx, params, tensors):
    src = params["source"]
    ctx.progress(0, 3, f"building {src['kind']} model", phase="loadModel")
    model = {"builtin": _load_builtin, "folder": _load_folder, "config": _load_config}[src["kind"]](ctx, src)
    ctx.check_cancelled()
    ctx.progress(2, 3, "moving to device", phase="loadModel")
    device = params.get("device", "cpu")
    model = model.to(device=device, dtype=_torch_dtype(params.get("dtype")))
    model.eval()
    dtype = next(model.parameters()).dtype
    entry = ModelEntry(model=model, architecture=type(model).__name__, device=device,
                       dtype=TORCH_NAME_TO_DTYPE[str(dtype).removeprefix("torch.")],
                       source_dir=src["path"] if src["kind"] == "folder" else None)
    handle = ctx.models.add(entry)
    ctx.progress(3, 3, handle, phase="loadModel")
    return {"handle": handle, "architecture": entry.architecture,
            "numParameters": sum(p.numel() for p in model.parameters()), "dtype": entry.dtype, "device": device}, None


@op("forward")
def forward(ctx, params, tensors):
    entry = ctx.models.get(params["handle"])
    kwargs = {}
    for name, t in ctx.named_tensors(tensors).items():
        if name.startswith("#"):
            raise ValueError(f"forward: tensor {name} has no name; name each input after the model's forward argument (input_ids, attention_mask, ...)")
        if name in ("input_ids", "token_type_ids", "position_ids") and t.dtype != torch.long:
            t = t.long()
        kwargs[name] = t.to(entry.device)
    want = params.get("outputs") or ["logits"]
    entry.model.eval()
    with torch.no_grad():
        out = entry.model(**kwargs, output_hidden_states=bool(params.get("hiddenStates")), return_dict=True)
    result: dict[str, torch.Tensor] = {}
    for name in want:
        value = out.get(name) if hasattr(out, "get") else getattr(out, name, None)
        if not isinstance(value, torch.Tensor):
            have = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
            raise KeyError(f"forward: output {name!r} is not a tensor output of {entry.architecture}; available: {have}")
        result[name] = value
    if params.get("hiddenStates"):
        for i, h in enumerate(out.hidden_states or ()):
            result[f"hidden_states.{i}"] = h
    return {"outputs": list(result)}, result


@op("getTensors")
def get_tensors(ctx, params, tensors):
    entry = ctx.models.get(params["handle"])
    sd = entry.model.state_dict()
    names = params.get("names")
    if names is not None:
        unknown = [n for n in names if n not in sd]
        if unknown:
            raise KeyError(f"getTensors: no weights named {unknown[:5]} in {entry.architecture} (e.g. {list(sd)[:3]})")
    else:
        names = [n for n in sd if n.startswith(params.get("prefix", ""))]
        if params.get("loraOnly"):
            names = [n for n in names if "lora_" in n]
    return {"names": names}, {n: sd[n] for n in names}


@op("releaseModel")
def release_model(ctx, params, tensors):
    return {"released": ctx.models.release(params["handle"])}, None
