"""The run config of a torch-engine run (one JSON file, written by the TypeScript side or by hand), checked before
torchrun starts so bad input fails in one line naming the field."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .errors import ConfigError
from .schedule import KINDS

STRATEGIES = ("ddp", "fsdp")
TASKS = ("causal-lm", "seq-cls")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: float = 16.0
    target_modules: tuple[str, ...] | None = None
    use_rslora: bool = False
    dropout: float = 0.0


@dataclass(frozen=True)
class Distributed:
    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int | None = None
    rdzv_endpoint: str | None = None
    rdzv_id: str = "loraport"
    strategy: str = "ddp"


@dataclass(frozen=True)
class RunConfig:
    out: str
    data: str
    events: str
    base: str | None = None
    builtin: str | None = None
    builtin_config: dict = field(default_factory=dict)
    adapter: str | None = None
    task: str | None = None
    lora: LoraSettings = LoraSettings()
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    lr: float = 1e-3
    schedule: str = "constant"
    warmup_steps: int = 0
    gradient_accumulation: int = 1
    max_grad_norm: float | None = None
    shuffle: bool = True
    seed: int = 0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.01
    checkpoint: str | None = None
    checkpoint_every: int | None = None
    resume_from: str | None = None  # a checkpoint file (either engine's) whose interrupted fit this run continues
    dist: Distributed = Distributed()

    @property
    def world_size(self) -> int:
        return self.dist.nproc_per_node * self.dist.nnodes


def _get(obj: dict, key: str, kind, default, where: str, check=None, expected: str = ""):
    if key not in obj or obj[key] is None:
        return default
    v = obj[key]
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, kind) or (kind is not bool and isinstance(v, bool)) or (check and not check(v)):
        raise ConfigError(f"{where}{key}: expected {expected or kind.__name__}, got {json.dumps(v)}")
    return v


def _pos(x) -> bool:
    return x >= 1


def parse_config(raw: dict, file: str = "run config") -> RunConfig:
    """RunConfig from the camelCase JSON the TypeScript side writes; ConfigError names `file` and the field."""
    w = f"{file}: "
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a JSON object")
    for k in ("out", "data", "events"):
        if not isinstance(raw.get(k), str) or not raw[k]:
            raise ConfigError(f"{w}{k}: expected a path")
    base, builtin = raw.get("base"), raw.get("builtin")
    if (base is None) == (builtin is None):
        raise ConfigError(f"{w}give exactly one of base (a Hugging Face model folder) or builtin (a seeded tiny model)")
    if base is not None and not os.path.isfile(os.path.join(base, "config.json")):
        raise ConfigError(f"{w}base: {base} is not a Hugging Face model folder (no config.json)")
    if not os.path.isfile(raw["data"]):
        raise ConfigError(f"{w}data: {raw['data']}: no such file")
    adapter = raw.get("adapter")
    if adapter is not None and not os.path.isfile(os.path.join(adapter, "adapter_config.json")):
        raise ConfigError(f"{w}adapter: {adapter} is not a PEFT adapter folder (no adapter_config.json)")
    lo = raw.get("lora") or {}
    targets = lo.get("targetModules")
    if targets is not None and (not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t for t in targets)):
        raise ConfigError(f"{w}lora.targetModules: expected a non-empty list of module names")
    lora = LoraSettings(r=_get(lo, "r", int, 8, f"{w}lora.", _pos, "a positive integer"),
                        alpha=_get(lo, "alpha", float, 16.0, f"{w}lora.", lambda x: x > 0, "a positive number"),
                        target_modules=tuple(targets) if targets else None,
                        use_rslora=_get(lo, "rslora", bool, False, f"{w}lora."),
                        dropout=_get(lo, "dropout", float, 0.0, f"{w}lora.", lambda x: 0 <= x < 1, "a number in [0, 1)"))
    fit = raw.get("fit") or {}
    f = f"{w}fit."
    sched = fit.get("lrSchedule") or {}
    kind = _get(sched, "kind", str, "constant", f"{f}lrSchedule.", lambda x: x in KINDS, " or ".join(KINDS))
    d = raw.get("distributed") or {}
    dw = f"{w}distributed."
    dist = Distributed(nproc_per_node=_get(d, "nprocPerNode", int, 1, dw, _pos, "a positive integer"),
                       nnodes=_get(d, "nnodes", int, 1, dw, _pos, "a positive integer"),
                       node_rank=_get(d, "nodeRank", int, None, dw, lambda x: x >= 0, "a non-negative integer"),
                       rdzv_endpoint=_get(d, "rdzvEndpoint", str, None, dw, lambda x: ":" in x, "host:port"),
                       rdzv_id=_get(d, "rdzvId", str, "loraport", dw),
                       strategy=_get(d, "strategy", str, "ddp", dw, lambda x: x in STRATEGIES, "ddp or fsdp"))
    if dist.nnodes > 1 and not dist.rdzv_endpoint:
        raise ConfigError(f"{dw}rdzvEndpoint: {dist.nnodes} nodes need a rendezvous endpoint (host:port of node 0)")
    ck = raw.get("checkpoint") or {}
    cfg = RunConfig(
        out=raw["out"], data=raw["data"], events=raw["events"], base=base, builtin=builtin,
        builtin_config=_get(raw, "builtinConfig", dict, {}, w), adapter=adapter,
        task=_get(raw, "task", str, None, w, lambda x: x in TASKS, " or ".join(TASKS)), lora=lora,
        epochs=_get(fit, "epochs", int, 1, f, _pos, "a positive integer"),
        max_steps=_get(fit, "maxSteps", int, None, f, _pos, "a positive integer"),
        batch_size=_get(fit, "batchSize", int, 8, f, _pos, "a positive integer"),
        lr=_get(fit, "lr", float, 1e-3, f, lambda x: x >= 0, "a non-negative number"),
        schedule=kind, warmup_steps=_get(sched, "warmupSteps", int, 0, f"{f}lrSchedule.", lambda x: x >= 0, "a non-negative integer"),
        gradient_accumulation=_get(fit, "gradientAccumulation", int, 1, f, _pos, "a positive integer"),
        max_grad_norm=_get(fit, "maxGradNorm", float, None, f, lambda x: x > 0, "a positive number"),
        shuffle=_get(fit, "shuffle", bool, True, f), seed=_get(fit, "seed", int, 0, f, lambda x: x >= 0, "a non-negative integer"),
        beta1=_get(fit, "beta1", float, 0.9, f), beta2=_get(fit, "beta2", float, 0.999, f), eps=_get(fit, "eps", float, 1e-8, f),
        weight_decay=_get(fit, "weightDecay", float, 0.01, f),
        checkpoint=_get(ck, "path", str, None, f"{w}checkpoint."),
        checkpoint_every=_get(ck, "every", int, None, f"{w}checkpoint.", _pos, "a positive integer"),
        resume_from=_get(ck, "resumeFrom", str, None, f"{w}checkpoint."), dist=dist)
    if cfg.batch_size % cfg.world_size:
        raise ConfigError(f"{f}batchSize: {cfg.batch_size} is the global batch and must divide evenly over the {cfg.world_size} ranks "
                          f"(nprocPerNode × nnodes); give a multiple of {cfg.world_size}")
    if cfg.checkpoint_every and not cfg.checkpoint:
        raise ConfigError(f"{w}checkpoint.path: checkpoint.every needs a checkpoint file")
    if cfg.resume_from and not os.path.isfile(cfg.resume_from):
        raise ConfigError(f"{w}checkpoint.resumeFrom: {cfg.resume_from}: no such file to resume from")
    return cfg


def read_config(path: str) -> RunConfig:
    try:
        with open(path, encoding="utf8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg})") from None
    return parse_config(raw, path)
