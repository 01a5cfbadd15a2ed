"""The PEFT model of a run and its distributed wrapper (DDP, or FSDP2's fully_shard per transformer block)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..export.train_step import default_task, load_base, trainable_params
from .config import RunConfig
from .errors import ConfigError

INIT_SEED = 0  # the exporter's default --seed: PEFT's lora_A init is then the ORT engine's initial adapter


@dataclass
class RunModel:
    peft: torch.nn.Module  # the PEFT model (unwrapped): its config is saved beside the adapter
    wrapped: torch.nn.Module  # what the loop calls: DDP(peft), or peft itself with FSDP2 applied in place
    names: list[str]  # trainable parameter names, module order
    keys: dict[str, str]  # name -> PEFT saved key (`base_model.model.….lora_A.weight`), the checkpoint's keys
    task: str
    vocab_size: int
    max_positions: int | None


def build_peft(cfg: RunConfig) -> tuple[torch.nn.Module, str, list[str], dict[str, str]]:
    from peft import LoraConfig, PeftModel, get_peft_model
    try:
        base, _ = load_base(cfg.base, cfg.builtin, cfg.builtin_config or None)
    except ValueError as e:
        raise ConfigError(f"builtin: {e}") from None
    task = cfg.task or default_task(base)
    if task == "seq-cls" and default_task(base) != "seq-cls":
        raise ConfigError(f"task: seq-cls needs a *ForSequenceClassification model, the base is {type(base).__name__}")
    torch.manual_seed(INIT_SEED)  # PEFT draws lora_A from torch's global RNG
    if cfg.adapter:
        model = PeftModel.from_pretrained(base, cfg.adapter, is_trainable=True)
    else:
        lc = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, use_rslora=cfg.lora.use_rslora,
                        target_modules=list(cfg.lora.target_modules) if cfg.lora.target_modules else None,
                        task_type="SEQ_CLS" if task == "seq-cls" else "CAUSAL_LM")
        try:
            model = get_peft_model(base, lc)
        except ValueError as e:  # e.g. target modules not found in the base model
            raise ConfigError(f"lora.targetModules: {e}") from None
    dropout = cfg.lora.dropout if not cfg.adapter else float(getattr(model.peft_config["default"], "lora_dropout", 0.0) or 0.0)
    # Dropout off = eval mode: deterministic, and the ORT engine's arithmetic. With dropout, train mode (as
    # transformers' Trainer), which also turns on the base model's own dropouts.
    model.train(dropout > 0)
    names, keys, _ = trainable_params(model)
    return model, task, names, keys


def wrap(model: torch.nn.Module, strategy: str, world: int) -> torch.nn.Module:
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(model) if world > 1 else model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    mesh = init_device_mesh("cpu", (world,))
    blocks = set(getattr(model.base_model.model, "_no_split_modules", None) or [])
    for m in model.modules():
        if type(m).__name__ in blocks:
            fully_shard(m, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def build(cfg: RunConfig, world: int) -> RunModel:
    model, task, names, keys = build_peft(cfg)
    c = model.base_model.model.config
    max_pos = getattr(c, "n_positions", None) or getattr(c, "max_position_embeddings", None)
    wrapped = wrap(model, cfg.dist.strategy, world)
    return RunModel(model, wrapped, names, keys, task, int(c.vocab_size), int(max_pos) if max_pos else None)


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a parameter or optimizer state (FSDP2 shards are DTensors; a collective, every rank calls it)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def like(ref: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """`value` (a whole tensor) laid out like `ref` (this rank's shard when `ref` is a DTensor)."""
    if hasattr(ref, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor
        return distribute_tensor(value, ref.device_mesh, ref.placements)
    return value
