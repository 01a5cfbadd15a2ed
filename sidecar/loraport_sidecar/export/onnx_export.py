"""Export a Hugging Face base model to ONNX for loraport's runtime.

Two modes:

- ``adapter-inputs``: the base model with every targeted module's LoRA factors as **required** graph inputs: tables
  ``A [slots, r, in]`` and ``B [slots, out, r]`` of every adapter the runtime holds (ranks zero-padded to the table's
  largest, scaling folded into B by the caller) and ``lora_index [batch]``, the table slot of each batch row. One
  session then runs any adapters of any ranks, a different one per row in the same batch (a gather picks each row's
  factors), and a slot of zeros (or rank 0) is the base model. No optional inputs: onnxruntime-node silently drops
  feeds for names that are also initializers (notes §4).
- ``merged``: a PEFT adapter merged into the base weights; the graph has only the model inputs.

Causal LMs get a KV-cache graph (both modes): inputs ``input_ids``, ``attention_mask`` (past + new columns),
``position_ids`` and ``past_key_values.{i}.key/.value`` ``[batch, kv_heads, past, head_dim]``; outputs ``logits`` and
``present.{i}.key/.value`` (Optimum's names, so other tools can run the merged graph). Prefill and decode are one graph:
a prefill feeds a past of length 1 whose mask column is 0 — the masked slot gets softmax weight exactly 0 — so there
is no second copy of the weights and no zero-length dimension for the exporter to specialise.

Outputs go to a temp folder next to ``out`` and are renamed into place, so a failed export leaves nothing behind.
Run as a module: ``python -m loraport_sidecar.export.onnx_export --base DIR --out DIR --mode adapter-inputs``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.fx.experimental._config  # noqa: F401  (backed_size_oblivious, as torch.onnx's capture sets it)
from torch import nn

from .embedding_slots import EmbeddingSlot, TiedTokensHead, tied_head_name, token_input_names, weight_sha256
from .manifest import HEADS_NAME, MANIFEST_NAME, MODEL_NAME, base_checksum, build_manifest
from .support import explain_failure, ready_for_export

OPSET = 20
# The protobuf limit is 2 GiB for the whole .onnx; stay clear of it.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000

# Files of a Hugging Face folder that tokenise and stop generation; copied into the export's tokenizer/ folder.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
                   "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model", "generation_config.json")
TOKENIZER_DIR = "tokenizer"


def default_targets(model_type: str) -> list[str] | None:
    """The modules PEFT adapts when target_modules is unset: PEFT's own per-architecture table."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as table

    found = table.get(model_type)
    return list(found) if found else None

# progress(phase, done, total, message, unit="stages"). Phase "export" goes through STAGES (done = the stage's
# index, total = len(STAGES), done == total at the end); phase "export.capture" counts the model's blocks (unit
# "layers") while torch.export runs through them. It may raise to cancel (the temp folder is removed).
Progress = Callable[..., None]

STAGES = (
    "loading the base model",
    "preparing the model",
    "capturing the graph (torch.export)",
    "converting to ONNX (the longest step on a large model)",
    "optimizing the ONNX graph",
    "writing model.onnx",
    "checking the graph",
    "writing the manifest and tokenizer files",
)


class ExportError(ValueError):
    """Bad export request (missing folder, unknown target, base/adapter mismatch): one line for the user."""


def _no_progress(phase: str, done: int, total: int, message: str, unit: str = "stages") -> None:
    pass


def _stage(progress: Progress, i: int) -> None:
    progress("export", i, len(STAGES), STAGES[i])


# ---- loading ------------------------------------------------------------------------------------


def load_base(base_dir: str | os.PathLike) -> tuple[nn.Module, Any, str]:
    """Load a Hugging Face model folder in float32 (an F16/BF16 checkpoint is upcast exactly). Returns (model, config, source dtype)."""
    import transformers

    base = Path(base_dir)
    cfg_path = base / "config.json"
    if not cfg_path.is_file():
        raise ExportError(f"{cfg_path}: no such file (expected a Hugging Face model folder with config.json)")
    config = transformers.AutoConfig.from_pretrained(str(base))
    archs = getattr(config, "architectures", None) or []
    if not archs or not hasattr(transformers, archs[0]):
        raise ExportError(f"{cfg_path}: 'architectures' must name a transformers model class, got {archs!r}")
    cls = getattr(transformers, archs[0])
    source_dtype = str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32").replace("torch.", "")
    # Eager attention: plain MatMul/Softmax in the graph, no SDPA kernel choices at trace time.
    model = cls.from_pretrained(str(base), dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model, config, source_dtype


def _is_projection(module: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (nn.Linear, Conv1D))


def _in_out(module: nn.Module) -> tuple[int, int, bool]:
    """(in_features, out_features, fan_in_fan_out). Conv1D keeps its weight as [in, out]; an embedding's are
    (num_embeddings, embedding_dim), as PEFT's lora_embedding_A [r, num_embeddings] and B [dim, r] are oriented."""
    if isinstance(module, nn.Embedding):
        return module.num_embeddings, module.embedding_dim, False
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features, False
    w = module.weight
    return int(w.shape[0]), int(w.shape[1]), True


def find_targets(model: nn.Module, targets: list[str]) -> list[str]:
    """Module paths matched like PEFT's list form: exact name or ending in '.' + entry. Linear/Conv1D, and
    nn.Embedding (embedding_slots.py: embedding LoRA and trainable tokens)."""
    found = []
    for name, module in model.named_modules():
        if not name or not (_is_projection(module) or isinstance(module, nn.Embedding)):
            continue
        if any(name == t or name.endswith("." + t) for t in targets):
            found.append(name)
    if not found:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and _is_projection(m)})
        raise ExportError(f"--targets {','.join(targets)}: no Linear/Conv1D module matches (nor an Embedding); this model has {', '.join(names)}")
    return found


# ---- the adapter-inputs graph -------------------------------------------------------------------


class _Feeds:
    """Per-call LoRA factor tables and row slots, filled by the top wrapper before the base model runs (plain Python:
    export traces through it)."""

    def __init__(self) -> None:
        self.factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.index: torch.Tensor | None = None
        # Embedding targets' trainable-token tables (ids [slots, n], rows [slots, n, dim]), by embedding key.
        self.tokens: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


class LoraSlot(nn.Module):
    """A projection plus each row's `(x @ A^T) @ B^T`, A and B gathered from the call's tables by the row's slot
    (scaling already in B): rows of one batch may use different adapters, zero-padded ranks add exact zeros."""

    def __init__(self, base: nn.Module, key: str, feeds: _Feeds) -> None:
        super().__init__()
        self.base = base
        self.key = key
        self._feeds = feeds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_table, b_table = self._feeds.factors[self.key]
        a = a_table[self._feeds.index]  # [batch, r, in]
        b = b_table[self._feeds.index]  # [batch, out, r]
        return self.base(x) + torch.matmul(torch.matmul(x, a.transpose(-1, -2)), b.transpose(-1, -2))


class AdapterInputsModel(nn.Module):
    """forward(<model inputs>, lora_index, A_0, B_0, A_1, B_1, ..., head_0, head_1, ...) -> logits (+ present KV).

    The model inputs are (input_ids, attention_mask), plus (position_ids, past_0_key, past_0_value, ...) for a
    KV-cache graph (`n_model_inputs` says how many). Head parameters (e.g. a classifier that PEFT saves whole,
    modules_to_save) are whole-tensor inputs, swapped in with functional_call, so a per-request adapter can bring
    its own head."""

    def __init__(self, model: nn.Module, keys: list[str], heads: list[str] | None = None, kv_layers: int | None = None,
                 tied_heads: dict[str, str] | None = None) -> None:
        super().__init__()
        self.feeds = _Feeds()
        self.keys = keys
        self.heads = heads or []
        self.kv_layers = kv_layers
        # Embedding targets (LoRA + trainable-token inputs, after the heads), and the LM head tied to each, if any.
        self.token_keys = [k for k in keys if isinstance(model.get_submodule(k), nn.Embedding)]
        tied_heads = tied_heads or {}
        for key in keys:
            parent_name, _, child = key.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            slot = EmbeddingSlot if key in self.token_keys else LoraSlot
            setattr(parent, child, slot(getattr(parent, child), key, self.feeds))
        for key, head in tied_heads.items():
            parent_name, _, child = head.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, TiedTokensHead(getattr(parent, child), key, self.feeds))
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> Any:
        n = _n_model_inputs(self.kv_layers)
        model_inputs, index, lora = inputs[:n], inputs[n], inputs[n + 1:]
        self.feeds.index = index
        self.feeds.factors = {k: (lora[2 * i], lora[2 * i + 1]) for i, k in enumerate(self.keys)}
        tokens = lora[2 * len(self.keys) + len(self.heads):]
        self.feeds.tokens = {k: (tokens[2 * i], tokens[2 * i + 1]) for i, k in enumerate(self.token_keys)}
        plain = PlainModel(self.model, self.kv_layers)
        if not self.heads:
            return plain(*model_inputs)
        from torch.func import functional_call

        swapped = dict(zip(self.heads, lora[2 * len(self.keys):2 * len(self.keys) + len(self.heads)]))
        return functional_call(plain, {f"model.{k}": v for k, v in swapped.items()}, tuple(model_inputs), strict=False)


class PlainModel(nn.Module):
    """The model as (input_ids, attention_mask) → logits, the signature every exported graph has; with `kv_layers`,
    (input_ids, attention_mask, position_ids, past_0_key, past_0_value, ...) → (logits, present_0_key, ...)."""

    def __init__(self, model: nn.Module, kv_layers: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.kv_layers = kv_layers

    def forward(self, *inputs: torch.Tensor) -> Any:
        if self.kv_layers is None:
            return _logits(self.model, inputs[0], inputs[1])
        return _logits_with_cache(self.model, inputs[0], inputs[1], inputs[2], inputs[3:])


def _n_model_inputs(kv_layers: int | None) -> int:
    return 2 if kv_layers is None else 3 + 2 * kv_layers


def _logits(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask, "return_dict": True}
    if getattr(model.config, "is_decoder", False) or hasattr(model.config, "use_cache"):
        kwargs["use_cache"] = False
    return model(**kwargs).logits


def _logits_with_cache(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                       past: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    from transformers import DynamicCache

    # No config: every layer a full DynamicLayer, so present = past + new for every architecture (a sliding-window
    # model still masks by its window; its cache just keeps everything).
    cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2)])
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache, use_cache=True, return_dict=True)
    present: list[torch.Tensor] = []
    for layer in cache.layers:
        present += [layer.keys, layer.values]
    return (out.logits, *present)


def kv_layout(model: nn.Module) -> dict[str, int] | None:
    """Layers, KV heads and head size of a causal LM's cache, read from a real one-token forward (so GQA, explicit
    head_dim and every architecture's quirks come from the model itself). None for models without a KV cache."""
    from transformers import DynamicCache

    archs = getattr(model.config, "architectures", None) or [type(model).__name__]
    if not any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs):
        return None
    cache = DynamicCache()
    with torch.no_grad():
        model(input_ids=torch.zeros(1, 1, dtype=torch.int64), cache=cache, use_cache=True, return_dict=True)
    k = cache.layers[0].keys
    return {"layers": len(cache.layers), "kv_heads": int(k.shape[1]), "head_dim": int(k.shape[3])}


def past_names(layers: int) -> list[str]:
    return [f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]


def present_names(layers: int) -> list[str]:
    return [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]


LORA_INDEX = "lora_index"


def input_names_for(key: str) -> tuple[str, str]:
    return f"lora_A.{key}", f"lora_B.{key}"


# ---- export -------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    out_dir: str
    manifest: dict[str, Any]
    seconds: float


def export_onnx(
    base_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    mode: str = "adapter-inputs",
    targets: list[str] | None = None,
    adapter_dir: str | os.PathLike | None = None,
    external_data: bool | None = None,
    progress: Progress = _no_progress,
    head_inputs: list[str] | None = None,
    kv_cache: bool = True,
    tokenizer_dir: str | os.PathLike | None = None,
    lora_defaults: bool = False,
) -> ExportResult:
    """Export `base_dir` (a Hugging Face model folder) to `out_dir` (model.onnx + loraport-onnx.json, and the
    tokenizer files of `tokenizer_dir`, default the base folder, under tokenizer/)."""
    t0 = time.perf_counter()
    if mode not in ("adapter-inputs", "merged"):
        raise ExportError(f"mode: expected 'adapter-inputs' or 'merged', got {mode!r}")
    _stage(progress, 0)
    model, config, source_dtype = load_base(base_dir)
    return export_model(model, out_dir, mode=mode, targets=targets, adapter_dir=adapter_dir, external_data=external_data,
                        progress=progress, source_dtype=source_dtype, base_path=str(Path(base_dir).resolve()), t0=t0, head_inputs=head_inputs,
                        tokenizer_dir=tokenizer_dir if tokenizer_dir is not None else base_dir, kv_cache=kv_cache,
                        lora_defaults=lora_defaults)


def export_model(
    model: nn.Module,
    out_dir: str | os.PathLike,
    mode: str = "adapter-inputs",
    targets: list[str] | None = None,
    adapter_dir: str | os.PathLike | None = None,
    external_data: bool | None = None,
    progress: Progress = _no_progress,
    source_dtype: str = "float32",
    base_path: str = "",
    t0: float | None = None,
    premerged: bool = False,
    head_inputs: list[str] | None = None,
    tokenizer_dir: str | os.PathLike | None = None,
    kv_cache: bool = True,
    lora_defaults: bool = False,
) -> ExportResult:
    """Export an in-memory transformers model (float32, plain: no LoRA layers in it). It is modified (LoRA slots
    are put in place), so pass a copy if it is still needed. `premerged`: merged mode with the adapter already merged
    into `model` (the sidecar's handles). `head_inputs`: modules whose parameters become whole-tensor inputs
    (adapter-inputs; default for sequence-classification models: the modules whose names end in `classifier` or
    `score`, as PEFT saves them with SEQ_CLS adapters; `[]` for none). `tokenizer_dir`: a folder whose tokenizer
    files are copied along (the base's). `kv_cache`: a
    KV-cache graph for causal LMs (the default; False gives the plain (input_ids, attention_mask) → logits graph).
    `lora_defaults` (adapter-inputs): LoRA inputs get default values, for ORT's `.onnx_adapter` mechanism in Python,
    C# and ORT GenAI; loraport's Node runtime refuses such an export (see lora_defaults.py)."""
    if lora_defaults and mode != "adapter-inputs":
        raise ExportError("lora_defaults: only adapter-inputs exports have LoRA inputs to give defaults")
    t0 = time.perf_counter() if t0 is None else t0
    if mode not in ("adapter-inputs", "merged"):
        raise ExportError(f"mode: expected 'adapter-inputs' or 'merged', got {mode!r}")
    _stage(progress, 1)
    config = model.config
    model.eval()
    ready_for_export(model)  # unsupported architectures refused here, in one line, before any tracing
    checksum = base_checksum(model)
    model_type = getattr(config, "model_type", "")
    kv = kv_layout(model) if kv_cache else None
    kv_layers = kv["layers"] if kv else None

    lora_entries: list[dict[str, Any]] = []
    head_entries: list[dict[str, Any]] = []
    head_defaults: dict[str, torch.Tensor] = {}
    token_entries: list[dict[str, Any]] = []
    base_weights: dict[str, str] = {}
    tied_heads: dict[str, str] = {}
    adapter_info: dict[str, Any] | None = None
    if mode == "adapter-inputs":
        if adapter_dir is not None:
            raise ExportError("--adapter is only used with --mode merged (adapter-inputs takes adapters at run time)")
        tlist = targets or default_targets(model_type)
        if not tlist:
            raise ExportError(f"--targets: PEFT has no default target modules for model type {model_type!r}; name the modules to adapt")
        keys = find_targets(model, tlist)
        for key in keys:
            module = model.get_submodule(key)
            fin, fout, fifo = _in_out(module)
            a_name, b_name = input_names_for(key)
            entry: dict[str, Any] = {"module": key, "peft_module": f"base_model.model.{key}", "a_input": a_name, "b_input": b_name,
                                     "in_features": fin, "out_features": fout, "fan_in_fan_out": fifo}
            if isinstance(module, nn.Embedding):
                entry["kind"] = "embedding"
                ids_name, rows_name = token_input_names(key)
                head = tied_head_name(model, key)
                token_entries.append({"module": key, "ids_input": ids_name, "rows_input": rows_name, "num_embeddings": fin,
                                      "embedding_dim": fout, "tied_head": head})
                if head is not None:
                    tied_heads[key] = head
            lora_entries.append(entry)
        if token_entries:
            # Hashes of the input/output embedding weights: an adapter's saved copy of one (save_embedding_layers) that
            # equals the base's changes nothing and can be served; any other value is refused by the runtime.
            for emb in (model.get_input_embeddings(), model.get_output_embeddings()):
                if emb is not None and getattr(emb, "weight", None) is not None:
                    emb_name = next(n for n, m in model.named_modules() if m is emb)
                    base_weights[f"{emb_name}.weight"] = weight_sha256(emb.weight)
        if head_inputs is None:
            is_cls = any(a.endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or [])
            # What a SEQ_CLS adapter saves whole: PEFT's modules_to_save ("classifier", "score") match as a plain name
            # suffix, so DistilBERT's pre_classifier is saved (and must be an input) too.
            head_inputs = [n for n, _ in model.named_modules() if n.endswith(("classifier", "score"))] if is_cls else []
        for h in head_inputs:
            try:
                model.get_submodule(h)
            except AttributeError:
                raise ExportError(f"--head-inputs {h}: no such module in the model") from None
        head_params = [n for n, _ in model.named_parameters() if any(n.startswith(h + ".") for h in head_inputs)]
        head_defaults = {n: p.detach().to(torch.float32).contiguous().clone() for n, p in model.named_parameters() if n in head_params}
        head_entries = [{"param": n, "input": f"head.{n}", "shape": list(head_defaults[n].shape)} for n in head_params]
        wrapped: nn.Module = AdapterInputsModel(model, keys, head_params, kv_layers, tied_heads)
    else:
        if premerged:
            adapter_info = {"path": "", "config": {}}
        elif adapter_dir is None:
            raise ExportError("--mode merged needs --adapter <PEFT adapter folder>")
        else:
            model, adapter_info = _merge_peft(model, adapter_dir)
        wrapped = PlainModel(model, kv_layers)
    wrapped.eval()

    batch, seq = 2, 8
    gen = torch.Generator().manual_seed(0)
    vocab = int(getattr(config, "vocab_size", 100))
    ids = torch.randint(0, min(vocab, 100), (batch, seq), generator=gen)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    args: list[torch.Tensor] = [ids, mask]
    b_dim, s_dim = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dyn: list[Any] = [{0: b_dim, 1: s_dim}, {0: b_dim, 1: s_dim}]
    names = ["input_ids", "attention_mask"]
    output_names = ["logits"]
    if kv:
        # A past of 3 traced (any length ≥ 1 runs); the mask spans past + new tokens.
        past = 3
        args[1] = torch.ones(batch, past + seq, dtype=torch.int64)
        dyn[1] = {0: b_dim, 1: torch.export.Dim("total_sequence")}
        args.append(torch.arange(past, past + seq).expand(batch, seq).contiguous())
        dyn.append({0: b_dim, 1: s_dim})
        names.append("position_ids")
        p_dim = torch.export.Dim("past_sequence")
        for _ in range(kv["layers"] * 2):
            args.append(torch.randn(batch, kv["kv_heads"], past, kv["head_dim"], generator=gen))
            dyn.append({0: b_dim, 2: p_dim})
        names += past_names(kv["layers"])
        output_names += present_names(kv["layers"])
    lora_dyn: list[Any] = []
    if mode == "adapter-inputs":
        # Three table slots traced, rows on slots 2 and 0 (any number of slots and any row assignment run).
        slots = torch.export.Dim("lora_slots")
        args.append(torch.tensor([2, 0][:batch] + [0] * max(0, batch - 2), dtype=torch.int64))
        lora_dyn.append({0: b_dim})
        names.append(LORA_INDEX)
    for i, e in enumerate(lora_entries):
        # Distinct example ranks per module and a distinct symbol each: rank_pattern adapters differ per module.
        r = 2 + (i % 3)
        args += [torch.zeros(3, r, e["in_features"]), torch.zeros(3, e["out_features"], r)]
        rank = torch.export.Dim(f"rank_{i}")
        lora_dyn += [{0: slots, 1: rank}, {0: slots, 2: rank}]
        names += [e["a_input"], e["b_input"]]
    for h in head_entries:
        args.append(head_defaults[h["param"]].clone())
        lora_dyn.append({})
        names.append(h["input"])
    for i, t in enumerate(token_entries):
        # Two token ids per slot traced (-1 = none), a symbol of its own: adapters list any number of ids.
        args += [torch.tensor([[1, -1], [-1, -1], [3, 0]], dtype=torch.int64)[:, :2], torch.zeros(3, 2, t["embedding_dim"])]
        n = torch.export.Dim(f"tokens_{i}")
        lora_dyn += [{0: slots, 1: n}, {0: slots, 1: n}]
        names += [t["ids_input"], t["rows_input"]]

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    # mkdtemp makes it 0700; the finished folder gets the permissions a plain mkdir would give.
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        # forward(*inputs): one varargs parameter, so the dynamic shapes are one tuple over every input.
        try:
            program = _to_onnx(wrapped, tuple(args), (tuple(dyn + lora_dyn),), names, output_names, progress)
        except torch.onnx.errors.OnnxExporterError as exc:
            # torch.onnx's report is pages of coloured text; the user gets the architecture and its one-line cause.
            raise explain_failure(model, exc) from exc
        _stage(progress, 5)
        n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        use_external = external_data if external_data is not None else n_bytes > EXTERNAL_DATA_THRESHOLD
        model_path = tmp / MODEL_NAME
        program.save(str(model_path), external_data=use_external)
        _stage(progress, 6)
        _check_graph(model_path, names)
        if lora_defaults:
            from .lora_defaults import add_lora_defaults

            add_lora_defaults(model_path, lora_entries, head_entries, head_defaults, token_entries)
        if head_defaults:
            from safetensors.torch import save_file

            # The base's own head values: what the runtime feeds when an adapter brings no head.
            save_file(head_defaults, str(tmp / HEADS_NAME), metadata={"format": "pt"})
        _stage(progress, 7)
        if tokenizer_dir is not None and not Path(tokenizer_dir).is_dir():
            raise ExportError(f"tokenizer: {tokenizer_dir} is not a folder (expected one with tokenizer.json)")
        tokenizer = copy_tokenizer(tokenizer_dir, tmp) if tokenizer_dir is not None else []
        generation = generation_block(model, config, kv, tokenizer, Path(tokenizer_dir) if tokenizer_dir is not None else None) if kv else None
        manifest = build_manifest(model_path=model_path, mode=mode, config=config, opset=OPSET, checksum=checksum,
                                  source_dtype=source_dtype, lora=lora_entries, adapter=adapter_info, heads=head_entries,
                                  targets=targets or default_targets(model_type) or [], base_path=base_path, generation=generation)
        if token_entries:
            # Absent in exports without embedding targets (and in earlier exports): the runtime then refuses such adapters.
            manifest["tokens"] = token_entries
            manifest["base_weights_sha256"] = base_weights
        if lora_defaults:
            manifest["lora_defaults"] = True
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            # Replace an earlier export as a whole; never merge files of two exports.
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress("export", len(STAGES), len(STAGES), "done")
    return ExportResult(out_dir=str(out), manifest=manifest, seconds=time.perf_counter() - t0)


def _to_onnx(wrapped: nn.Module, args: tuple, dynamic_shapes: tuple, names: list[str], output_names: list[str], progress: Progress) -> Any:
    """torch.onnx (dynamo) in its three steps, each announced: capture (torch.export, non-strict, as torch.onnx's first
    strategy does, with one event per model block), conversion, optimization. A capture that fails here is left to
    torch.onnx, which also tries its other strategies."""
    _stage(progress, 2)
    blocks = _repeated_blocks(wrapped)
    raised: list[BaseException] = []  # a cancel raised by progress inside the capture must not become a fallback
    seen = [0]  # blocks announced: a second trace (refined shapes) does not count them again

    def on_block(i: int) -> None:
        if i < seen[0]:
            return
        seen[0] = i + 1
        try:
            progress("export.capture", i, len(blocks), f"block {i + 1} of {len(blocks)}", "layers")
        except BaseException as e:
            raised.append(e)
            raise

    def capture(shapes: Any) -> Any:
        # The settings of torch.onnx's own first strategy (deferred runtime asserts: a LoRA rank of 1 is not a guard).
        from torch.onnx import _flags

        with torch.no_grad(), torch.fx.experimental._config.patch(backed_size_oblivious=True):
            return torch.export.export(wrapped, args, dynamic_shapes=shapes, strict=False,
                                       prefer_deferred_runtime_asserts_over_guards=getattr(_flags, "PREFER_DEFERRED_RUNTIME_ASSERTS_OVER_GUARDS", False))

    hooks = [b.register_forward_pre_hook(lambda _m, _a, i=i: on_block(i)) for i, b in enumerate(blocks)]
    try:
        try:
            captured: Any = capture(dynamic_shapes)
        except torch._dynamo.exc.UserError as exc:
            if raised:
                raise
            # As torch.onnx does: take export's suggested fixes (e.g. a LoRA rank dim that must not be 1) and retry.
            dynamic_shapes = torch.export.dynamic_shapes.refine_dynamic_shapes_from_suggested_fixes(exc.msg, dynamic_shapes)
            captured = capture(dynamic_shapes)
        if blocks:
            progress("export.capture", len(blocks), len(blocks), f"{len(blocks)} blocks", "layers")
    except Exception:  # noqa: BLE001 - torch.onnx retries with its own strategies and reports its own error
        if raised:
            raise raised[0] from None
        captured = wrapped
    finally:
        for h in hooks:
            h.remove()
    _stage(progress, 3)
    with torch.no_grad():
        program = torch.onnx.export(captured, args, dynamo=True, dynamic_shapes=dynamic_shapes, input_names=names,
                                    output_names=output_names, opset_version=OPSET, optimize=False, verbose=False)
    _stage(progress, 4)
    program.optimize()
    return program


def _repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's layer stack (its longest ModuleList: transformer.h, model.layers, encoder.layer), for per-layer progress."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    return list(max(lists, key=len)) if lists else []


def _umask() -> int:
    """The process umask without setting it (os.umask would briefly change it for the sidecar's other thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def copy_tokenizer(base: str | os.PathLike, folder: Path) -> list[str]:
    """Copy the base folder's tokenizer and generation files into `folder/tokenizer/`; the names copied."""
    files = [f for f in TOKENIZER_FILES if (Path(base) / f).is_file()]
    if files:
        (folder / TOKENIZER_DIR).mkdir()
        for f in files:
            shutil.copyfile(Path(base) / f, folder / TOKENIZER_DIR / f)
    return files


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def generation_block(model: nn.Module, config: Any, kv: dict[str, int], tokenizer_files: list[str], base: Path | None) -> dict[str, Any]:
    """What the runtime needs to generate: the cache layout, the stop/pad token ids and where the tokenizer is.

    Token ids as transformers' generate takes them: generation_config.json first, then config.json."""
    gen: dict[str, Any] = {}
    if base is not None and (base / "generation_config.json").is_file():
        gen = json.loads((base / "generation_config.json").read_text())
    elif getattr(model, "generation_config", None) is not None:
        gen = model.generation_config.to_dict()

    def pick(key: str) -> Any:
        v = gen.get(key)
        return v if v is not None else getattr(config, key, None)

    positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    return {
        "kv_cache": {**kv, "dtype": "float32", "past_inputs": past_names(kv["layers"]), "present_outputs": present_names(kv["layers"]),
                     "position_ids_input": "position_ids"},
        "max_positions": int(positions) if positions else None,
        "bos_token_id": (_ids(pick("bos_token_id")) or [None])[0],
        "eos_token_ids": _ids(pick("eos_token_id")),
        "pad_token_id": (_ids(pick("pad_token_id")) or [None])[0],
        "tokenizer": TOKENIZER_DIR if "tokenizer.json" in tokenizer_files else None,
        "tokenizer_files": tokenizer_files,
    }


def _merge_peft(model: nn.Module, adapter_dir: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    from peft import PeftModel

    cfg = Path(adapter_dir) / "adapter_config.json"
    if not cfg.is_file():
        raise ExportError(f"{cfg}: no such file (expected a PEFT adapter folder)")
    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir))
    except (RuntimeError, ValueError, KeyError) as e:
        raise ExportError(f"{adapter_dir}: adapter does not fit the base model: {str(e).splitlines()[0]}") from e
    merged = peft_model.merge_and_unload()
    merged.eval()
    return merged, {"path": str(Path(adapter_dir).resolve()), "config": json.loads(cfg.read_text())}


def _check_graph(model_path: Path, names: list[str]) -> None:
    """The runtime relies on: every LoRA factor a required input (no same-named initializer), default domain only."""
    import onnx

    m = onnx.load(str(model_path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    inputs = [i.name for i in m.graph.input]
    shadowed = sorted(set(inputs) & inits)
    if shadowed:
        raise RuntimeError(f"exported graph has optional inputs (initializer of the same name): {shadowed[:3]}")
    missing = [n for n in names if n not in inputs]
    if missing:
        raise RuntimeError(f"exported graph lacks inputs {missing[:3]} (pruned by the exporter?)")
    if m.ir_version > 10:
        raise RuntimeError(f"exported IR version {m.ir_version} is newer than onnxruntime-node 1.30 accepts")


# ---- CLI ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loraport_sidecar.export.onnx_export", description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", default="adapter-inputs", choices=["adapter-inputs", "merged"])
    p.add_argument("--adapter")
    p.add_argument("--targets", help="comma-separated module names (PEFT list form)")
    p.add_argument("--external-data", choices=["auto", "yes", "no"], default="auto")
    p.add_argument("--head-inputs", help="comma-separated modules given as whole-tensor inputs ('none' for none; default for seq-cls: modules named *classifier or *score, as PEFT saves them)")
    p.add_argument("--no-kv-cache", action="store_true", help="a plain (input_ids, attention_mask) -> logits graph for causal LMs")
    p.add_argument("--progress-json", action="store_true", help="progress events as JSON lines on stderr")
    a = p.parse_args(argv)

    def progress(phase: str, done: int, total: int, message: str, unit: str = "stages") -> None:
        if a.progress_json:
            print(json.dumps({"progress": {"phase": phase, "done": done, "total": total, "unit": unit, "message": message}}), file=sys.stderr, flush=True)

    try:
        res = export_onnx(a.base, a.out, mode=a.mode, targets=a.targets.split(",") if a.targets else None, adapter_dir=a.adapter,
                          external_data={"auto": None, "yes": True, "no": False}[a.external_data], progress=progress,
                          head_inputs=None if a.head_inputs is None else [] if a.head_inputs == "none" else a.head_inputs.split(","),
                          kv_cache=not a.no_kv_cache)
    except ExportError as e:
        print(json.dumps({"error": str(e)}))
        return 2
    print(json.dumps({"out": res.out_dir, "seconds": round(res.seconds, 2), "manifest": res.manifest}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
