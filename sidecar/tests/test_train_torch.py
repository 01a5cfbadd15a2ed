"""`--engine torch`: PEFT + torch.distributed through torchrun on CPU (gloo). Every figure compared here comes from
real runs in this test: 1 process × global batch 4 vs 2 processes × 2 rows (DDP and FSDP2), a rank SIGKILLed mid-run,
and a resume from the checkpoint it left. One module fixture runs each launch once; the tests share the outputs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from loraport_sidecar.reference import tiny_models
from loraport_sidecar.reference.train_batches import pad_examples
from loraport_sidecar.train_torch.config import parse_config
from loraport_sidecar.train_torch.data import read_examples, shuffled_order
from loraport_sidecar.train_torch.errors import ConfigError, DataError

SIDECAR = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
STEPS = 8
LORA = {"r": 4, "alpha": 8, "targetModules": ["c_attn", "c_fc"]}
# lr 2e-3: Adam turns fp32 summation-order noise (~1e-7 relative: 4 rows summed vs 2 + 2) into factor differences
# proportional to lr; at 1e-2 they reach 1.6e-5 on a few lora_A entries after 8 steps, at 2e-3 a few 1e-6.
# 29 examples, global batch 4, accumulation 2: 8 micro-batches an epoch, the last of 1 row (rank 1 gets none).
FIT = {"maxSteps": STEPS, "batchSize": 4, "lr": 2e-3, "lrSchedule": {"kind": "cosine", "warmupSteps": 2}, "gradientAccumulation": 2, "seed": 3}


def write_data(path: str, n: int = 29) -> list[dict]:
    rng = random.Random(1)
    rows = []
    for i in range(n):
        ids = [rng.randrange(128) for _ in range(rng.randint(4, 12))]
        ex = {"input_ids": ids}
        if i % 3 == 0:  # prompt-masked labels
            p = rng.randint(1, len(ids) - 2)
            ex["labels"] = [-100 if j < p else x for j, x in enumerate(ids)]
        rows.append(ex)
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


def config(tmp, name: str, nproc: int, strategy: str = "ddp", **extra) -> str:
    cfg = {"out": str(tmp / name / "adapter"), "data": str(tmp / "data.jsonl"), "events": str(tmp / f"{name}.events"), "builtin": "gpt2",
           "lora": LORA, "fit": FIT, "distributed": {"nprocPerNode": nproc, "strategy": strategy}, **extra}
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def launch(cfg: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "loraport_sidecar.train_torch.launch", cfg], cwd=SIDECAR, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def finish(p: subprocess.Popen) -> tuple[int, list[dict]]:
    out, err = p.communicate(timeout=900)
    return p.returncode, [json.loads(line) for line in out.splitlines() if line.strip()]


def losses(events: list[dict]) -> list[float]:
    return [e["loss"] for e in events if e["type"] == "step"]


def processes_with(text: str) -> list[int]:
    """Live processes whose command line mentions `text` (a run's config path)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().decode(errors="replace")
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if text in cmd and state != "Z":
                found.append(int(pid))
    return found


def rank_pid(cfg: str, rank: int) -> int | None:
    for pid in processes_with(cfg):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and b"LOCAL_RANK=%d" % rank in env and b"train_torch.loop" in open(f"/proc/{pid}/cmdline", "rb").read():
            return _own_namespace_pid(pid)
    return None


def _own_namespace_pid(pid: int) -> int:
    """`pid` as seen from this process's PID namespace: /proc may belong to another one (the CI sandbox mounts the
    host's), where the pids it lists are not ours to signal. NSpid's last field is the pid in the innermost namespace."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return pid


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("torch-engine")
    data = write_data(str(tmp / "data.jsonl"))
    res = {"tmp": tmp, "data": data}
    for name, nproc, strategy in (("one", 1, "ddp"), ("ddp", 2, "ddp"), ("fsdp", 2, "fsdp")):
        t0 = time.perf_counter()
        code, events = finish(launch(config(tmp, name, nproc, strategy)))
        assert code == 0, events[-1:]
        res[name] = {"events": events, "adapter": load_file(str(tmp / name / "adapter" / "adapter_model.safetensors")), "s": time.perf_counter() - t0}

    # A rank SIGKILLed while the run holds after step 3 (its checkpoint written).
    ck = tmp / "killed" / "ck.safetensors"
    cfg = config(tmp, "killed", 2, checkpoint={"path": str(ck), "every": 1})
    p = launch(cfg, {"LORAPORT_TEST_STALL_AFTER_STEP": "3"})
    seen = []
    for line in p.stdout:
        seen.append(json.loads(line))
        if seen[-1]["type"] == "checkpoint" and seen[-1]["step"] == 3:
            break
    deadline = time.time() + 60
    while (pid := rank_pid(cfg, 1)) is None and time.time() < deadline:
        time.sleep(0.2)
    assert pid is not None, "rank 1 not found"
    os.kill(pid, signal.SIGKILL)
    code, rest = finish(p)
    time.sleep(1)
    from safetensors import safe_open
    with safe_open(str(ck), framework="pt") as f:
        ck_step = f.metadata()["step"]
    res["killed"] = {"code": code, "events": seen + rest, "ck": str(ck), "ck_step": ck_step, "left": processes_with(cfg)}

    # Resume that checkpoint with one process: it must end where the unbroken runs end.
    code, events = finish(launch(config(tmp, "resumed", 1, checkpoint={"path": str(tmp / "resumed" / "ck.safetensors"), "every": 1, "resumeFrom": str(ck)})))
    assert code == 0, events[-1:]
    res["resumed"] = {"events": events, "adapter": load_file(str(tmp / "resumed" / "adapter" / "adapter_model.safetensors"))}
    print("launch seconds: " + ", ".join(f"{k} {res[k]['s']:.1f}" for k in ("one", "ddp", "fsdp")))
    print("losses (1 process): " + ", ".join(f"{x:.4f}" for x in losses(res["one"]["events"])))
    return res


def max_diff(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_train_the_one_process_adapter(runs, strategy):
    one, two = runs["one"], runs[strategy]
    la, lb = losses(one["events"]), losses(two["events"])
    assert len(la) == len(lb) == STEPS
    worst_loss = max(abs(a - b) for a, b in zip(la, lb))
    worst_factor = max_diff(one["adapter"], two["adapter"])
    print(f"{strategy} ×2 vs 1 process: loss max abs {worst_loss:.2e}, factors max abs {worst_factor:.2e}")
    assert worst_loss <= 1e-5 and worst_factor <= 1e-5
    assert {e["worldSize"] for e in two["events"] if e["type"] == "step"} == {2}
    start = two["events"][0]
    assert start["type"] == "start" and start["strategy"] == strategy and start["totalSteps"] == STEPS


def test_fsdp_equals_ddp(runs):
    assert max(abs(a - b) for a, b in zip(losses(runs["ddp"]["events"]), losses(runs["fsdp"]["events"]))) <= 1e-5
    assert max_diff(runs["ddp"]["adapter"], runs["fsdp"]["adapter"]) <= 1e-5


def test_losses_are_peft_models_losses_and_the_adapter_loads_in_peft(runs):
    """Step-1 loss = transformers' loss of the PEFT model on the first two micro-batches (lr is 0 at step 1 of the
    warm-up); the written adapter loads in PEFT with every key and lowers the loss on the training data."""
    tmp, data = runs["tmp"], runs["data"]
    order = shuffled_order(len(data), 3 * 1_000_003)
    base = tiny_models.gpt2()
    base.set_attn_implementation("eager")
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(0)
    init = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"], lora_dropout=0.0, task_type="CAUSAL_LM")).eval()
    with torch.no_grad():
        want = sum(float(init(**pad_examples([data[i] for i in order[k * 4:(k + 1) * 4]], "causal-lm")).loss) for k in range(2)) / 2
    assert abs(losses(runs["one"]["events"])[0] - want) <= 1e-5

    whole = pad_examples(data, "causal-lm")
    with torch.no_grad():
        before = float(init(**whole).loss)
    loaded = PeftModel.from_pretrained(tiny_models.gpt2(), str(tmp / "ddp" / "adapter")).eval()
    sd = {k.replace(".default", ""): v for k, v in loaded.state_dict().items() if "lora_" in k}
    assert sorted(sd) == sorted(runs["ddp"]["adapter"])  # no missing or extra keys
    assert max(float((sd[k] - v).abs().max()) for k, v in runs["ddp"]["adapter"].items()) == 0
    with torch.no_grad():
        after = float(loaded(**whole).loss)
    assert after < before, (before, after)


def test_a_killed_rank_fails_the_run_keeps_the_checkpoint_and_leaves_no_process(runs):
    k = runs["killed"]
    assert k["code"] == 1
    err = k["events"][-1]
    assert err["type"] == "error" and err["code"] == "E_WORKER_FAILED", err
    assert "rank 1 was killed by SIGKILL" in err["message"] and "after step 3" in err["message"], err["message"]
    assert k["ck"] in err["message"] and "(step 3)" in err["message"]
    assert k["left"] == [], f"processes left behind: {k['left']}"
    assert k["ck_step"] == "3"
    assert not [p for p in os.listdir(os.path.dirname(k["ck"])) if p.startswith(".tmp-")]  # no half-written file


def test_resuming_the_checkpoint_with_another_world_size_ends_where_unbroken_runs_end(runs):
    r = runs["resumed"]
    start = r["events"][0]
    assert start["step"] == 3 and start["fitStartStep"] == 0
    assert [e["step"] for e in r["events"] if e["type"] == "step"] == [4, 5, 6, 7, 8]
    assert max(abs(a - b) for a, b in zip(losses(r["events"]), losses(runs["one"]["events"])[3:])) <= 1e-5
    assert max_diff(r["adapter"], runs["one"]["adapter"]) <= 1e-5


def test_config_and_data_errors_name_the_field(tmp_path):
    data = tmp_path / "d.jsonl"
    write_data(str(data), 4)
    base = {"out": str(tmp_path / "o"), "data": str(data), "events": str(tmp_path / "e"), "builtin": "gpt2"}
    with pytest.raises(ConfigError, match=r"fit.batchSize: 5 is the global batch and must divide evenly over the 2 ranks"):
        parse_config({**base, "fit": {"batchSize": 5}, "distributed": {"nprocPerNode": 2}})
    with pytest.raises(ConfigError, match=r"distributed.strategy: expected ddp or fsdp"):
        parse_config({**base, "distributed": {"strategy": "zero3"}})
    with pytest.raises(ConfigError, match=r"rdzvEndpoint: 2 nodes need a rendezvous endpoint"):
        parse_config({**base, "distributed": {"nnodes": 2}})
    with pytest.raises(ConfigError, match=r"lora.r: expected a positive integer, got 0"):
        parse_config({**base, "lora": {"r": 0}})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input_ids": [1, 2]}\n{"input_ids": [1, 900]}\n')
    with pytest.raises(DataError, match=r"bad.jsonl line 2: input_ids: expected a non-empty list of token ids in \[0, 128\)"):
        read_examples(str(bad), 128, 64, "causal-lm")
