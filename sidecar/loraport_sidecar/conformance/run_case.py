"""Runs the reference implementations for one case and writes what loraport is compared with.

Output folder layout (all names are relative to it; the manifest lists what exists):
- `reference.safetensors`: `base/<param>` (base weights of every adapted module, for loraport's merge),
  `weights/<backend>/<param>` (merged weights), `forward/<backend>/batch<i>` (outputs), `inputs/batch<i>/<name>`.
- `base/`: the base as a Hugging Face folder (for ONNX export); `adapter/`: the case's PEFT adapter;
  `adapter_forward/`: the same restricted to the forward model when the case cuts layers;
  `adapter_loralib.pt`: a generated loralib checkpoint (loralib-sourced generated cases).
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import torch
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import save_file
from torch import nn

from . import loralib_layers as ll
from .bases import TORCH_DTYPES, build_base, load_hf_folder, make_inputs, save_hf_folder
from .case_file import load_case
from .errors import CaseError
from .published import load_checkpoint, recipe_to_peft, split_lora

DEFAULT_REFERENCE_DIR = os.path.join(os.path.dirname(__file__), "../../../../shared/reference")


# ---- small helpers -------------------------------------------------------------------------------------------

def skeleton(model: nn.Module, names: list[str]) -> nn.Module:
    """A module holding copies of just `names` at their dotted paths: merges of huge bases without copying them."""
    root = nn.Module()
    for n in names:
        parts = n.split(".")
        cur = root
        for p in parts[:-1]:
            if not hasattr(cur, p):
                cur.add_module(p, nn.Module())
            cur = getattr(cur, p)
        cur.add_module(parts[-1], copy.deepcopy(model.get_submodule(n)))
    return root


def peft_on_skeleton(skel: nn.Module, folder: str) -> PeftModel:
    """PEFT's own loading of an adapter folder onto a skeleton. The task type is dropped: a task wrapper such as
    PeftModelForCausalLM needs generation hooks the skeleton lacks, and merged weights do not depend on it
    (modules_to_save is in the config itself)."""
    cfg = PeftConfig.from_pretrained(folder)
    cfg.task_type = None
    return PeftModel.from_pretrained(skel, folder, config=cfg)


def output_of(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits (or the model's output); for token-level outputs only positions the attention mask keeps."""
    with torch.no_grad():
        out = model(**batch)
    logits = out.logits if hasattr(out, "logits") else out
    if logits.dim() == 3 and "attention_mask" in batch:
        logits = logits[batch["attention_mask"].bool()]  # padded positions are undefined by contract
    return logits.float().contiguous()


def param_of(module_name: str, module: nn.Module) -> str:
    return f"{module_name}.weight"


def peft_merged_weights(pm: PeftModel) -> dict[str, torch.Tensor]:
    """Every LoRA-wrapped module's weight after PEFT's own merge (plus modules_to_save copies)."""
    pm.merge_adapter()
    out = {}
    inner = pm.base_model.model
    for name, mod in inner.named_modules():
        if isinstance(mod, LoraLayer):
            out[f"{name}.weight"] = mod.get_base_layer().weight.detach().float().clone()
    for name, mod in inner.named_modules():
        if hasattr(mod, "modules_to_save") and hasattr(mod, "active_adapter"):
            saved = mod.modules_to_save[mod.active_adapters[0] if hasattr(mod, "active_adapters") else "default"]
            for pname, p in saved.named_parameters():
                out[f"{name}.{pname}"] = p.detach().float().clone()
    pm.unmerge_adapter()
    return out


class Sink:
    """Collects named tensors and writes them as one safetensors file (temp file + rename)."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def put(self, name: str, t: torch.Tensor) -> None:
        self.tensors[name] = t.detach().contiguous().clone()

    def write(self, path: str) -> None:
        tmp = f"{path}.tmp"
        save_file(self.tensors, tmp, metadata={"format": "pt", "producer": "loraport_sidecar.conformance"})
        os.replace(tmp, path)


def _seed_lora(model: nn.Module, seed: int, std: float) -> None:
    """Give every LoRA factor seeded non-zero values (B = 0 after a default init would make ΔW trivially zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if "lora_magnitude_vector" in name:
                p.mul_(1.0 + 0.1 * torch.randn(p.shape, generator=gen).to(p.dtype))
            elif "lora_" in name:
                p.copy_((std * torch.randn(p.shape, generator=gen)).to(p.dtype))


def _forward_all(sink: Sink, backend: str, model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> None:
    for i, b in enumerate(batches):
        sink.put(f"forward/{backend}/batch{i}", output_of(model, b))


def _put_inputs(sink: Sink, batches: list[dict[str, torch.Tensor]]) -> None:
    for i, b in enumerate(batches):
        for k, v in b.items():
            sink.put(f"inputs/batch{i}/{k}", v)


# ---- the three kinds of case ---------------------------------------------------------------------------------

# Which `model_type` a real base folder (--base) must have to stand in for a case's seeded family.
FAMILY_MODEL_TYPE = {"gpt2-medium": "gpt2", "gpt2": "gpt2", "roberta-base": "roberta", "roberta": "roberta", "llama": "llama"}


def _base_for(case: dict[str, Any], base_dir: str | None) -> tuple[str | None, str | None]:
    """(--base when it fits this published case, else None; a note when it was given but does not fit)."""
    if not base_dir or case["adapter"]["source"] != "published":
        return None, None
    try:
        with open(os.path.join(base_dir, "config.json"), encoding="utf-8") as f:
            model_type = json.load(f).get("model_type")
    except (OSError, json.JSONDecodeError) as e:
        raise CaseError(os.path.join(base_dir, "config.json"), f"cannot read the base's config: {e}") from None
    want = FAMILY_MODEL_TYPE.get(case["base"]["family"])
    if model_type != want:
        return None, f"--base is a {model_type!r} model; this case needs {want!r}, so it uses seeded weights"
    return base_dir, None


def run_case(case_path: str, out: str, reference_dir: str | None = None, base_dir: str | None = None,
             ts_adapter: str | None = None, ts_adapter_forward: str | None = None, lora_alpha: float | None = None) -> dict[str, Any]:
    case = load_case(case_path)
    if lora_alpha is not None and case["adapter"]["source"] != "peft":
        case["adapter"]["lora_alpha"] = lora_alpha  # --alpha: the published files store no alpha
        case["adapter"]["alpha_note"] = "lora_alpha given by --alpha"
    base_dir, base_note = _base_for(case, base_dir)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    sink = Sink()
    manifest: dict[str, Any] = {
        "case_id": case["id"], "out": os.path.abspath(out), "tensors": "reference.safetensors",
        "weights": {"backends": [], "params": []}, "forward": {"backends": [], "batches": 0},
        "adapters": {}, "notes": [base_note] if base_note else [], "base_from": base_dir or f"seeded {case['base']['family']}",
    }
    src = case["adapter"]["source"]
    if src == "published":
        _published(case, out, sink, manifest, reference_dir, base_dir, ts_adapter, ts_adapter_forward)
    elif src == "peft":
        _peft_generated(case, out, sink, manifest, None)
    else:
        _loralib_generated(case, out, sink, manifest, None, ts_adapter)
    sink.write(os.path.join(out, "reference.safetensors"))
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    return manifest


def _forward_spec(case: dict[str, Any], base_dir: str | None, manifest: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, torch.Tensor]]]:
    fwd = case.get("forward") or {}
    spec = {**case["base"], **fwd.get("base", {})}
    if base_dir and fwd.get("base"):
        manifest["notes"].append("forward runs on the full real base (--base); the case's layer cut does not apply")
    elif fwd.get("cut_note"):
        manifest["notes"].append(f"forward: {fwd['cut_note']}")
    batches = make_inputs(fwd, case["base"]["family"])
    manifest["forward"]["batches"] = len(batches)
    manifest["forward"]["select"] = "tokens where attention_mask is 1" if case["base"]["family"] in ("gpt2", "gpt2-medium", "llama") else "all"
    return spec, batches


def _published(case, out, sink, manifest, reference_dir, base_dir, ts_adapter, ts_adapter_forward) -> None:
    a = case["adapter"]
    ref_dir = reference_dir or os.environ.get("LORAPORT_REFERENCE_DIR") or DEFAULT_REFERENCE_DIR
    manifest["adapters"]["checkpoint"] = os.path.abspath(os.path.join(ref_dir, a["file"]))
    sd = load_checkpoint(os.path.join(ref_dir, a["file"]))
    pairs, extra = split_lora(sd)
    lora = {"r": a["r"], "lora_alpha": a["lora_alpha"], "targets": a["targets"], "enable_lora": a.get("enable_lora"),
            "fan_in_fan_out": a.get("fan_in_fan_out", False)}
    manifest["lora"] = lora
    manifest["notes"].append(f"{a['file']}: r={a['r']}, lora_alpha={a['lora_alpha']} (scaling {a['lora_alpha'] / a['r']:g})"
                             + (f"; {a['alpha_note']}" if a.get("alpha_note") else ""))

    # Merged weights on the full base, every adapted module.
    base = build_base(case["base"], base_dir)
    modules = sorted(pairs)
    missing = [m for m in modules if m not in dict(base.named_modules())]
    if missing:
        raise CaseError(a["file"], f"module '{missing[0]}' is not in the base ({manifest['base_from']})")
    head_names = sorted({k.rsplit(".", 1)[0] for k in extra})
    for m in modules:
        sink.put(f"base/{m}.weight", base.get_submodule(m).weight.float())
    for k in extra:
        sink.put(f"base/{k}", base.state_dict()[k].float())

    lora_sk = skeleton(base, modules + head_names)
    ll.apply_loralib(lora_sk, lora["targets"], lora["r"], lora["lora_alpha"], lora["enable_lora"], lora["fan_in_fan_out"])
    ll.load_lora_weights(lora_sk, sd, a["file"])
    ll.merge_in_place(lora_sk)
    for m in modules:
        sink.put(f"weights/loralib.merge/{m}.weight", ll.merged_weight(lora_sk.get_submodule(m)).float())
    for k in extra:
        sink.put(f"weights/loralib.merge/{k}", lora_sk.state_dict()[k].float())
    del lora_sk

    recipe_to_peft(pairs, extra, lora, os.path.join(out, "adapter"))
    manifest["adapters"]["recipe"] = os.path.join(out, "adapter")
    backends = ["loralib.merge", "peft.merge[recipe]"]
    for tag, folder in (("recipe", os.path.join(out, "adapter")), ("ts-converted", ts_adapter)):
        if not folder:
            continue
        pm = peft_on_skeleton(skeleton(base, modules + head_names), folder)
        for k, t in peft_merged_weights(pm).items():
            sink.put(f"weights/peft.merge[{tag}]/{k}", t)
        if tag == "ts-converted":
            backends.append("peft.merge[ts-converted]")
    manifest["weights"] = {"backends": backends, "params": [f"{m}.weight" for m in modules] + sorted(extra)}
    del base

    # Forward outputs on the (possibly cut) forward base.
    spec, batches = _forward_spec(case, base_dir, manifest)
    fbase = build_base(spec, base_dir)
    save_hf_folder(fbase, os.path.join(out, "base"))
    manifest["base_model_dir"] = os.path.join(out, "base")
    present = set(dict(fbase.named_modules()))
    kept = {m: ab for m, ab in pairs.items() if m in present}
    if len(kept) < len(pairs):
        manifest["notes"].append(f"forward: {len(kept)} of {len(pairs)} adapted modules are in the cut forward model")
    recipe_to_peft(kept, extra, lora, os.path.join(out, "adapter_forward"))
    manifest["adapters"]["forward"] = os.path.join(out, "adapter_forward")
    _put_inputs(sink, batches)

    lm = copy.deepcopy(fbase)
    ll.apply_loralib(lm, lora["targets"], lora["r"], lora["lora_alpha"], lora["enable_lora"], lora["fan_in_fan_out"])
    ll.load_lora_weights(lm, {k: v for k, v in sd.items() if k.rsplit(".", 1)[0] in kept or k in extra}, a["file"])
    lm.eval()
    _forward_all(sink, "loralib.unmerged", lm, batches)
    ll.merge_in_place(lm)
    _forward_all(sink, "loralib.merged", lm, batches)
    del lm
    fwd_backends = ["loralib.unmerged", "loralib.merged"]
    for tag, folder in (("recipe", os.path.join(out, "adapter_forward")), ("ts-converted", ts_adapter_forward)):
        if not folder:
            continue
        pm = PeftModel.from_pretrained(copy.deepcopy(fbase), folder).eval()
        _forward_all(sink, f"peft[{tag}].unmerged", pm, batches)
        pm.merge_adapter()
        _forward_all(sink, f"peft[{tag}].merged", pm, batches)
        fwd_backends += [f"peft[{tag}].unmerged", f"peft[{tag}].merged"]
    manifest["forward"]["backends"] = fwd_backends


def _peft_generated(case, out, sink, manifest, base_dir) -> None:
    a = case["adapter"]
    base = build_base(case["base"], base_dir)
    cfg = LoraConfig(**a["config"])
    pm = get_peft_model(copy.deepcopy(base), cfg)
    _seed_lora(pm, int(a.get("seed", 1)), float(a.get("std", 0.05)))
    storage = a.get("storage_dtype", "F32")
    if storage != "F32":
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.data = p.data.to(TORCH_DTYPES[storage])
    adapter_dir = os.path.join(out, "adapter")
    pm.save_pretrained(adapter_dir)  # PEFT itself writes the adapter loraport reads
    manifest["adapters"]["peft"] = adapter_dir
    del pm
    _peft_reference(base, adapter_dir, case, out, sink, manifest, base_dir)
    if case.get("train") is not None:
        _train_reference(case, out, sink, manifest)


def _train_reference(case, out, sink, manifest) -> None:
    """Training cases: loraport's train-step artifact for the case's base and adapter (exported here; the export's
    own gates must pass), and the same steps with PEFT + torch.optim.AdamW — the per-step losses and the trained
    adapter, written by PEFT, for loraport's `ts.train` to be compared with."""
    from loraport_sidecar.export.train_graph import AdamWSettings
    from loraport_sidecar.export.train_step import default_task, export_train_step
    from loraport_sidecar.reference.train_batches import pad_examples

    t = case["train"]
    base_dir, adapter_dir = manifest["base_model_dir"], manifest["adapters"]["peft"]
    artifact = os.path.join(out, "train_artifact")
    export_train_step(artifact, base=base_dir, adapter=adapter_dir, log=lambda _msg: None)
    base = load_hf_folder(base_dir)
    base.set_attn_implementation("eager")  # as the exporter traces it
    task = default_task(base)
    model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=True).eval()  # eval: no dropout, as the graphs
    params = [p for p in model.parameters() if p.requires_grad]
    adamw = AdamWSettings()
    opt = torch.optim.AdamW(params, lr=t["lr"], betas=(adamw.beta1, adamw.beta2), eps=adamw.eps, weight_decay=adamw.weight_decay)
    examples, bs = t["examples"], int(t["batch_size"])
    losses = []
    for step in range(int(t["steps"])):
        batch = pad_examples(examples[step * bs:(step + 1) * bs], task)
        opt.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        losses.append(float(loss))
    sink.put("train/peft.train/losses", torch.tensor(losses, dtype=torch.float32))
    trained = os.path.join(out, "adapter_trained")
    model.save_pretrained(trained)
    manifest["train"] = {"artifact": artifact, "reference_adapter": trained, "steps": int(t["steps"]), "lr": t["lr"],
                         "batch_size": bs, "examples": examples, "task": task}
    manifest["notes"].append(f"training: {len(losses)} AdamW steps (lr {t['lr']}, batch {bs}, {task}); loraport's "
                             "train-step graphs in ONNX Runtime vs PEFT + torch.optim.AdamW; losses compared as outputs")


def _put_peft_merge(base, adapter_dir, sink, manifest) -> PeftModel:
    """PEFT's merged weights of the adapter on `base`, with the base weights loraport merges into; returns the PEFT model."""
    ref = PeftModel.from_pretrained(copy.deepcopy(base), adapter_dir).eval()
    merged = peft_merged_weights(ref)
    base_sd = base.state_dict()
    for k, t in merged.items():
        sink.put(f"weights/peft.merge/{k}", t)
        sink.put(f"base/{k}", base_sd[k])  # native dtype: loraport merges into the stored base
    manifest["weights"] = {"backends": ["peft.merge"], "params": sorted(merged)}
    return ref


def _peft_reference(base, adapter_dir, case, out, sink, manifest, base_dir) -> None:
    """PEFT's merge and forward (unmerged, merged) of the adapter folder on `base`; base weights for loraport."""
    ref = _put_peft_merge(base, adapter_dir, sink, manifest)
    if case.get("forward") is not None:
        spec, batches = _forward_spec(case, base_dir, manifest)
        _put_inputs(sink, batches)
        _forward_all(sink, "peft.unmerged", ref, batches)
        ref.merge_adapter()
        _forward_all(sink, "peft.merged", ref, batches)
        manifest["forward"]["backends"] = ["peft.unmerged", "peft.merged"]
    if case["base"]["family"] != "convnet":
        save_hf_folder(base, os.path.join(out, "base"))
        manifest["base_model_dir"] = os.path.join(out, "base")


def _loralib_generated(case, out, sink, manifest, base_dir, ts_adapter) -> None:
    a = case["adapter"]
    base = build_base(case["base"], base_dir)
    lora = {"r": a["r"], "lora_alpha": a["lora_alpha"], "targets": a["targets"], "enable_lora": a.get("enable_lora"),
            "fan_in_fan_out": a.get("fan_in_fan_out", False)}
    manifest["lora"] = lora
    lm = copy.deepcopy(base)
    modules = ll.apply_loralib(lm, lora["targets"], lora["r"], lora["lora_alpha"], lora["enable_lora"], lora["fan_in_fan_out"])
    _seed_lora(lm, int(a.get("seed", 1)), float(a.get("std", 0.05)))
    state = {k: v for k, v in lm.state_dict().items() if "lora_" in k}
    ckpt = os.path.join(out, "adapter_loralib.pt")
    torch.save(state, ckpt)  # a loralib checkpoint as loralib's users write it (lora_state_dict)
    manifest["adapters"]["loralib"] = ckpt
    for m in modules:
        sink.put(f"base/{m}.weight", base.get_submodule(m).weight.float())

    spec, batches = _forward_spec(case, None, manifest) if case.get("forward") is not None else (None, [])
    _put_inputs(sink, batches)
    lm.eval()
    _forward_all(sink, "loralib.unmerged", lm, batches)
    ll.merge_in_place(lm)
    _forward_all(sink, "loralib.merged", lm, batches)
    for m in modules:
        sink.put(f"weights/loralib.merge/{m}.weight", ll.merged_weight(lm.get_submodule(m)).float())
    fwd_backends = ["loralib.unmerged", "loralib.merged"] if batches else []
    backends = ["loralib.merge"]
    pairs = {m: (state[f"{m}.lora_A"], state[f"{m}.lora_B"]) for m in modules}
    adapters = []
    if not any(isinstance(base.get_submodule(m), nn.Conv2d) for m in modules):
        # loralib Conv2d has no exact PEFT equivalent (different factorisation), so no recipe for it.
        embeddings = frozenset(m for m in modules if isinstance(base.get_submodule(m), nn.Embedding))
        recipe_to_peft(pairs, {}, lora, os.path.join(out, "adapter"), embeddings=embeddings)
        manifest["adapters"]["recipe"] = os.path.join(out, "adapter")
        adapters.append(("recipe", os.path.join(out, "adapter")))
    else:
        manifest["notes"].append("loralib Conv2d (ΔW = reshape(B·A)) has no exact PEFT form: PEFT pairs are not applicable")
    if ts_adapter:
        adapters.append(("ts-converted", ts_adapter))
    for tag, folder in adapters:
        pm = PeftModel.from_pretrained(copy.deepcopy(base), folder).eval()
        for k, t in peft_merged_weights(pm).items():
            sink.put(f"weights/peft.merge[{tag}]/{k}", t)
        backends.append(f"peft.merge[{tag}]")
        if batches:
            _forward_all(sink, f"peft[{tag}].unmerged", pm, batches)
            fwd_backends.append(f"peft[{tag}].unmerged")
    manifest["weights"] = {"backends": backends, "params": [f"{m}.weight" for m in modules]}
    manifest["forward"]["backends"] = fwd_backends
    if case["base"]["family"] != "convnet":
        save_hf_folder(base, os.path.join(out, "base"))
        manifest["base_model_dir"] = os.path.join(out, "base")


def run_verify(base_dir: str, adapter_dir: str, out: str, inputs_file: str | None = None) -> dict[str, Any]:
    """A user's own base folder and PEFT adapter: PEFT's merge and forward, for loraport's to be compared with."""
    if not os.path.isfile(os.path.join(adapter_dir, "adapter_config.json")):
        raise CaseError(adapter_dir, "not a PEFT adapter folder: adapter_config.json is missing")
    base = load_hf_folder(base_dir)
    if inputs_file:
        try:
            with open(inputs_file, encoding="utf-8") as f:
                inp = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise CaseError(inputs_file, f"cannot read inputs: {e}") from None
        batches = [inp] if "input_ids" in inp else inp.get("batches", [])
    else:
        vocab = int(getattr(base.config, "vocab_size", 100))
        ids = [[(7 * i + 3) % vocab for i in range(8)], [(11 * i + 5) % vocab for i in range(5)] + [0, 0, 0]]
        batches = [{"input_ids": ids, "attention_mask": [[1] * 8, [1] * 5 + [0] * 3]}]
    case = {"id": "verify", "base": {"family": "user"}, "forward": {"batches": batches}}
    os.makedirs(out, exist_ok=True)
    sink = Sink()
    manifest: dict[str, Any] = {"case_id": "verify", "out": os.path.abspath(out), "tensors": "reference.safetensors",
                                "weights": {"backends": [], "params": []}, "forward": {"backends": [], "batches": 0},
                                "adapters": {"peft": os.path.abspath(adapter_dir)}, "notes": [], "base_from": base_dir,
                                "base_model_dir": os.path.abspath(base_dir)}
    ref = _put_peft_merge(base, adapter_dir, sink, manifest)
    tensors = make_inputs({"batches": batches}, "user")
    manifest["forward"]["batches"] = len(tensors)
    is_causal = type(base).__name__.endswith("ForCausalLM") or type(base).__name__.endswith("LMHeadModel")
    manifest["forward"]["select"] = "tokens where attention_mask is 1" if is_causal else "all"
    _put_inputs(sink, tensors)
    _forward_all(sink, "peft.unmerged", ref, tensors)
    ref.merge_adapter()
    _forward_all(sink, "peft.merged", ref, tensors)
    manifest["forward"]["backends"] = ["peft.unmerged", "peft.merged"]
    sink.write(os.path.join(out, "reference.safetensors"))
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    return manifest


def export_for_case(manifest: dict[str, Any], modes: list[str]) -> None:
    """ONNX exports of the case's forward base for loraport's ONNX Runtime backends, in this process (imports and
    the model load are paid once). Records `onnx[mode]` (a folder) or `onnx_errors[mode]` in the manifest."""
    from loraport_sidecar.export.onnx_export import export_onnx

    base = manifest.get("base_model_dir")
    adapter = manifest["adapters"].get("peft") or manifest["adapters"].get("forward") or manifest["adapters"].get("recipe")
    manifest["onnx"], manifest["onnx_errors"] = {}, {}
    if not base or not adapter:
        return
    with open(os.path.join(adapter, "adapter_config.json"), encoding="utf-8") as f:
        targets = json.load(f)["target_modules"]
    for mode in modes:
        out = os.path.join(manifest["out"], f"onnx-{mode}")
        try:
            if mode == "merged":
                export_onnx(base, out, mode="merged", adapter_dir=adapter)
            else:
                export_onnx(base, out, mode="adapter-inputs", targets=targets if isinstance(targets, list) else None)
            manifest["onnx"][mode] = out
        except Exception as e:  # noqa: BLE001 — reported on the pair, the other modes still run
            manifest["onnx_errors"][mode] = f"{type(e).__name__}: {e}".splitlines()[0]
    with open(os.path.join(manifest["out"], "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
