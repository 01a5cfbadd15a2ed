"""What every rank runs under torchrun: `python -m loraport_sidecar.train_torch.loop CONFIG.json`.

Loss normalisation: each optimizer step is the ORT engine's — the mean over micro-batches of each global
micro-batch's mean token loss. A rank holds a slice of every micro-batch, so it backpropagates its summed token
loss divided by the whole micro-batch's scored count (known from the data on every rank) times the world size:
DDP and FSDP average gradients over ranks, which then gives exactly the one-process gradient.
"""

from __future__ import annotations

import os
import sys
import time
import traceback

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .checkpoint import read_checkpoint, write_adapter, write_checkpoint
from .config import RunConfig, read_config
from .data import IGNORE_INDEX, empty_batch, make_batch, plan_fit, rank_slice, read_examples, step_micro_batches
from .errors import TrainRunError
from .events import EventWriter
from .lifecycle import die_with_parent
from .model import RunModel, build, full, like
from .schedule import learning_rate


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor, task: str) -> torch.Tensor:
    """Summed cross entropy of the scored labels (causal-lm: labels shifted left inside, as transformers does)."""
    if task == "causal-lm":
        shifted = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), shifted.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    return F.cross_entropy(logits.float(), labels.reshape(-1), reduction="sum")


def scored_of(examples: list[dict], task: str) -> int:
    if task == "seq-cls":
        return len(examples)
    n = 0
    for e in examples:
        labels = e.get("labels")
        mask = e.get("attention_mask")
        for j in range(1, len(e["input_ids"])):
            if labels is not None:
                n += labels[j] != IGNORE_INDEX
            else:
                n += mask is None or mask[j] == 1
    return n


class Trainer:
    def __init__(self, cfg: RunConfig, rank: int, world: int, events: EventWriter):
        self.cfg, self.rank, self.world, self.events = cfg, rank, world, events
        self.rm: RunModel = build(cfg, world)
        named = dict(self.rm.peft.named_parameters())
        self.params = [named[n] for n in self.rm.names]
        self.keys = [self.rm.keys[n] for n in self.rm.names]
        self.data = read_examples(cfg.data, self.rm.vocab_size, self.rm.max_positions, self.rm.task)
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)
        self.step, self.fit_start = 0, 0
        if cfg.resume_from:
            self._resume(cfg.resume_from)

    def _resume(self, path: str) -> None:
        shapes = [full(p).shape if hasattr(p, "full_tensor") else p.shape for p in self.params]
        ps, ms, vs, step, start = read_checkpoint(path, self.keys, shapes)
        with torch.no_grad():
            for p, x in zip(self.params, ps):
                p.copy_(like(p, x))
        for p, m, v in zip(self.params, ms, vs):
            self.opt.state[p] = {"step": torch.tensor(float(step)), "exp_avg": like(p, m).clone(), "exp_avg_sq": like(p, v).clone()}
        self.step, self.fit_start = step, start

    def _state(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Whole params and moments (collectives under FSDP: every rank calls this)."""
        ps, ms, vs = [], [], []
        for p in self.params:
            st = self.opt.state.get(p) or {}
            ps.append(full(p.detach()).clone())
            ms.append(full(st["exp_avg"]).clone() if "exp_avg" in st else torch.zeros(ps[-1].shape))
            vs.append(full(st["exp_avg_sq"]).clone() if "exp_avg_sq" in st else torch.zeros(ps[-1].shape))
        return ps, ms, vs

    def checkpoint(self) -> None:
        ps, ms, vs = self._state()
        if self.rank == 0:
            write_checkpoint(self.cfg.checkpoint, self.keys, ps, ms, vs, self.step, self.fit_start)
            self.events.emit("checkpoint", step=self.step, path=self.cfg.checkpoint)

    def save_adapter(self) -> None:
        import copy
        ps, _, _ = self._state()
        if self.rank == 0:
            pc = copy.copy(self.rm.peft.peft_config["default"])
            pc.inference_mode = True
            write_adapter(self.cfg.out, pc, dict(zip(self.keys, ps)))

    def train_step(self, k: int, total: int, plan) -> dict:
        cfg, task, world = self.cfg, self.rm.task, self.world
        epoch, micro = step_micro_batches(len(self.data), plan, cfg.batch_size, cfg.gradient_accumulation, cfg.shuffle, cfg.seed, k)
        lr = learning_rate(cfg.schedule, cfg.warmup_steps, cfg.lr, k, total)
        for g in self.opt.param_groups:
            g["lr"] = lr
        if cfg.lora.dropout > 0:
            torch.manual_seed((cfg.seed * 1_000_003 + self.step) * 4096 + self.rank)  # resumable dropout masks
        t0 = time.perf_counter()
        sums = torch.zeros(len(micro), dtype=torch.float64)
        scored = []
        tokens = 0
        self.opt.zero_grad(set_to_none=True)
        for i, rows in enumerate(micro):
            whole = [self.data[j] for j in rows]
            n_scored = max(1, scored_of(whole, task))
            scored.append(n_scored)
            mine = rank_slice(rows, self.rank, world)
            b = make_batch([self.data[j] for j in mine], task) if mine else empty_batch(task)
            tokens += sum(sum(e.get("attention_mask", [1] * len(e["input_ids"]))) for e in whole)
            logits = self.rm.wrapped(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
            s = token_loss_sum(logits, b.labels, task) * (1.0 if mine else 0.0)
            (s * (world / (n_scored * len(micro)))).backward()
            sums[i] = float(s.detach())
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.opt.step()
        if world > 1:
            dist.all_reduce(sums)
        loss = float(sum(float(sums[i]) / scored[i] for i in range(len(micro))) / len(micro))
        self.step += 1
        ms = (time.perf_counter() - t0) * 1000
        return {"step": self.step, "epoch": epoch, "loss": loss, "lr": lr, "tokensPerSecond": tokens * 1000 / ms, "stepMs": ms, "worldSize": world}

    def fit(self) -> None:
        cfg = self.cfg
        if not cfg.resume_from:
            self.fit_start = self.step
        plan = plan_fit(len(self.data), cfg.batch_size, cfg.gradient_accumulation, cfg.epochs, cfg.max_steps)
        self.events.emit("start", worldSize=self.world, strategy=cfg.dist.strategy, totalSteps=plan.total_steps, step=self.step,
                         fitStartStep=self.fit_start, params=len(self.params))
        while self.step - self.fit_start < plan.total_steps:
            rec = self.train_step(self.step - self.fit_start, plan.total_steps, plan)
            self.events.emit("step", **rec, totalSteps=plan.total_steps)
            done = self.step - self.fit_start
            if cfg.checkpoint and cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == plan.total_steps):
                self.checkpoint()
            if os.environ.get("LORAPORT_TEST_STALL_AFTER_STEP") == str(done):
                time.sleep(3600)  # tests: hold the run here so a rank can be killed at a known step
        self.save_adapter()
        self.events.emit("done", steps=self.step - self.fit_start, step=self.step, out=os.path.abspath(cfg.out), peakRssMiB=self._peak_rss())

    def _peak_rss(self) -> list[float]:
        """Each rank's peak resident memory (MiB), for the bench."""
        import resource
        mine = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0], dtype=torch.float64)  # KiB on Linux
        if self.world == 1:
            return [float(mine)]
        every = [torch.zeros_like(mine) for _ in range(self.world)]
        dist.all_gather(every, mine)
        return [round(float(x), 1) for x in every]


def main(argv: list[str] | None = None) -> int:
    die_with_parent()
    argv = sys.argv[1:] if argv is None else argv
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = read_config(argv[0])
    events = EventWriter(cfg.events, rank)
    torch.manual_seed(cfg.seed)
    try:
        if world > 1 or cfg.dist.strategy == "fsdp":
            dist.init_process_group("gloo")
        Trainer(cfg, rank, world, events).fit()
        if dist.is_initialized():
            dist.barrier()
        return 0
    except TrainRunError as e:
        events.error(e.code, str(e))
        return 1
    except Exception as e:  # noqa: BLE001 - reported to the launcher, which raises one typed error
        traceback.print_exc()  # into torchrun's log; the launcher reports the one-line message
        events.error("E_WORKER_FAILED", f"rank {rank} failed: {e}")
        return 1
    finally:
        events.close()
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
