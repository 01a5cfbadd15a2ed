"""Start a torch-engine run: `python -m loraport_sidecar.train_torch.launch CONFIG.json`.

Checks the config, runs torchrun (`python -m torch.distributed.run`, max-restarts 0) in its own process group with
stdout/stderr in `<events>.torchrun.log`, and prints rank 0's events to stdout as JSON lines as they come. The last
line is `{"type": "done", ...}` (exit 0) or `{"type": "error", "code", "message"}` (exit 1): a killed or failing rank
names the rank, what happened and the last intact checkpoint.

Lifecycle: this process dies with its parent (PR_SET_PDEATHSIG), torchrun dies with this process, every rank dies
with torchrun; SIGTERM / SIGINT here stop torchrun (which stops its ranks) and then kill its process group.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from .config import RunConfig, read_config
from .errors import TrainRunError
from .events import error_path
from .lifecycle import die_with_parent

SIDECAR_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def torchrun_argv(cfg: RunConfig, config_path: str) -> list[str]:
    """torchrun's command line; one DDP process on one node runs the loop directly (no rendezvous to set up)."""
    d = cfg.dist
    loop = ["-m", "loraport_sidecar.train_torch.loop", os.path.abspath(config_path)]
    if cfg.world_size == 1 and d.strategy == "ddp" and not d.rdzv_endpoint:
        return [sys.executable, *loop]
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(d.nproc_per_node), "--max-restarts", "0"]
    if d.nnodes == 1 and not d.rdzv_endpoint:
        argv.append("--standalone")
    else:
        argv += ["--nnodes", str(d.nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", d.rdzv_endpoint or "localhost:29400", "--rdzv-id", d.rdzv_id]
        if d.node_rank is not None:
            argv += ["--node-rank", str(d.node_rank)]
    return argv + loop


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def root_cause(log: str) -> tuple[int | None, int | None]:
    """(rank, exit code) of torchrun's "Root Cause (first observed failure)" block, when there is one."""
    block = log.split("Root Cause", 1)[-1] if "Root Cause" in log else ""
    rank = re.search(r"rank\s*:\s*(\d+)", block)
    code = re.search(r"exitcode\s*:\s*(-?\d+)", block)
    return (int(rank.group(1)) if rank else None, int(code.group(1)) if code else None)


class Launch:
    def __init__(self, cfg: RunConfig, config_path: str, out=sys.stdout):
        self.cfg, self.config_path, self.out = cfg, config_path, out
        self.log_path = cfg.events + ".torchrun.log"
        self.last_checkpoint: dict | None = None
        self.last_step: int | None = None
        self.proc: subprocess.Popen | None = None
        self.stopping = False
        self._buf = ""

    def emit(self, obj: dict) -> None:
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def _clean(self) -> None:
        open(self.cfg.events, "w").close()
        for r in range(self.cfg.world_size):
            if os.path.exists(error_path(self.cfg.events, r)):
                os.unlink(error_path(self.cfg.events, r))

    def _forward(self, fh) -> None:
        self._buf += fh.read()
        while "\n" in self._buf:  # only whole lines; a half-written one waits for the next read
            line, self._buf = self._buf.split("\n", 1)
            if not line.strip():
                continue
            ev = json.loads(line)
            if ev.get("type") == "checkpoint":
                self.last_checkpoint = ev
            elif ev.get("type") == "step":
                self.last_step = ev["step"]
            self.emit(ev)

    def stop(self, *_: object) -> None:
        """Stop torchrun (it stops its ranks), then kill whatever is left of its process group."""
        self.stopping = True
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def run(self) -> int:
        self._clean()
        env = dict(os.environ)
        env["PYTHONPATH"] = SIDECAR_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.cfg.dist.nproc_per_node)))
        env.setdefault("TRANSFORMERS_VERBOSITY", "error")
        env.setdefault("PYTHONWARNINGS", "ignore")
        with open(self.log_path, "w") as log, open(self.cfg.events, encoding="utf8") as events:
            self.proc = subprocess.Popen(torchrun_argv(self.cfg, self.config_path), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
            while self.proc.poll() is None:
                self._forward(events)
                time.sleep(0.1)
            self._forward(events)
        code = self.proc.returncode
        if code == 0:
            return 0
        self.emit({"type": "error", **self.failure(code)})
        return 1

    def failure(self, code: int) -> dict:
        with open(self.log_path, encoding="utf8", errors="replace") as f:
            log = f.read()
        errors = []
        for r in range(self.cfg.world_size):
            p = error_path(self.cfg.events, r)
            if os.path.exists(p):
                with open(p, encoding="utf8") as f:
                    errors.append(json.load(f))
        ck = self.last_checkpoint
        ck_note = (f"the last checkpoint, {ck['path']} (step {ck['step']}), is intact: resume from it" if ck
                   else "no checkpoint was written" + ("" if self.cfg.checkpoint else " (give a checkpoint file and checkpoint every N steps to resume later)"))
        at = f" after step {self.last_step}" if self.last_step is not None else " before the first step"
        typed = [e for e in errors if e["code"] != "E_WORKER_FAILED"]
        if typed:  # bad data or config found by a rank: the same error on every rank; report it as is
            return {"code": typed[0]["code"], "message": typed[0]["message"], "rank": typed[0]["rank"]}
        if self.stopping:
            return {"code": "E_CANCELLED", "message": f"training stopped{at}; {ck_note}"}
        rank, exit_code = root_cause(log) if "Root Cause" in log else (0 if self.cfg.world_size == 1 else None, code)
        if exit_code is not None and exit_code < 0:
            what = f"rank {rank} was killed by {_signal_name(exit_code)}" if rank is not None else f"a rank was killed by {_signal_name(exit_code)}"
        elif errors:
            mine = next((e for e in errors if e["rank"] == rank), errors[0])
            rank, what = mine["rank"], mine["message"]
        else:
            what = f"rank {rank} exited with code {exit_code}" if rank is not None else f"torchrun exited with code {code}"
        return {"code": "E_WORKER_FAILED", "rank": rank,
                "message": f"distributed training failed{at}: {what}; the other ranks were stopped; {ck_note} (log: {self.log_path})"}


def main(argv: list[str] | None = None) -> int:
    die_with_parent()
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(json.dumps({"type": "error", "code": "E_USAGE", "message": "usage: python -m loraport_sidecar.train_torch.launch CONFIG.json"}))
        return 2
    try:
        cfg = read_config(argv[0])
    except TrainRunError as e:
        print(json.dumps({"type": "error", "code": e.code, "message": str(e)}), flush=True)
        return 1
    launch = Launch(cfg, argv[0])
    signal.signal(signal.SIGTERM, launch.stop)
    signal.signal(signal.SIGINT, launch.stop)
    return launch.run()


if __name__ == "__main__":
    sys.exit(main())
