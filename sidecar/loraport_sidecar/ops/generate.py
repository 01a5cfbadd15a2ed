"""hfGenerate: transformers' own generate on a loaded handle — the reference the demo and the benchmark compare
loraport's ONNX Runtime generation with."""

from __future__ import annotations

import copy
import time

import torch

from ..registry import op


class _FirstToken:
    """A generate() streamer that notes when the first new token arrives (its first put is the prompt)."""

    def __init__(self) -> None:
        self.puts = 0
        self.first: float | None = None

    def put(self, value) -> None:
        self.puts += 1
        if self.puts == 2 and self.first is None:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


@op("hfGenerate")
def hf_generate(ctx, params, tensors):
    entry = ctx.models.get(params["handle"])
    model = entry.model
    if not hasattr(model, "generate"):
        raise ValueError(f"hfGenerate: {entry.architecture} does not generate (not a causal LM)")
    own = model.generation_config
    eos = own.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    pad = params.get("padTokenId", own.pad_token_id if own.pad_token_id is not None else (eos_ids[0] if eos_ids else 0))
    prompts = params["prompts"]
    if params.get("adapterNames") is not None and len(params["adapterNames"]) != len(prompts):
        raise ValueError(f"hfGenerate: adapterNames has {len(params['adapterNames'])} entries for {len(prompts)} prompts")
    n = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (n - len(p)) + p for p in prompts], device=entry.device)
    mask = torch.tensor([[0] * (n - len(p)) + [1] * len(p) for p in prompts], device=entry.device)
    cfg = copy.deepcopy(own)
    cfg.do_sample, cfg.max_new_tokens, cfg.min_new_tokens, cfg.pad_token_id = False, params["maxNewTokens"], None, pad
    cfg.temperature = cfg.top_p = cfg.top_k = None
    ignore = bool(params.get("ignoreEos"))
    streamer = _FirstToken()
    model.eval()
    t0 = time.perf_counter()
    try:
        if ignore:
            # generate() fills unset fields from the model's own config: unset EOS there too for this call.
            cfg.eos_token_id = own.eos_token_id = None
        with torch.no_grad():
            extra = {"adapter_names": params["adapterNames"]} if params.get("adapterNames") else {}
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg, streamer=streamer, **extra)
    finally:
        own.eos_token_id = eos
    total = time.perf_counter() - t0
    rows = []
    for b in range(len(prompts)):
        toks = out[b, n:].tolist()
        if not ignore:
            cut = next((i for i, t in enumerate(toks) if t in eos_ids), None)
            toks = toks if cut is None else toks[: cut + 1]
        rows.append(toks)
    first = (streamer.first or time.perf_counter()) - t0
    return {"tokens": rows, "ttftMs": first * 1000, "totalMs": total * 1000}, None
