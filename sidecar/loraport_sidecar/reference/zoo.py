"""The model zoo: one tiny, seeded transformers model per architecture, built from its config.

Each entry is (model class, config class, config kwargs, LoRA targets). Models have 2 layers, hidden 32, a 128-token
vocabulary and no dropout, so the whole zoo builds in seconds; `tiny_models._seeded` gives every parameter a fixed value
independent of transformers' init. Targets are PEFT's own defaults for the architecture
(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING) where PEFT has one; `targets` names the modules where it has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import transformers

from .tiny_models import _seeded

VOCAB = 128
HIDDEN = 32
LAYERS = 2
HEADS = 4
FFN = 64
POSITIONS = 64

# Decoder-only Llama-family configs share these names.
_LLAMA_LIKE = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=2,
                   intermediate_size=FFN, vocab_size=VOCAB, max_position_embeddings=POSITIONS)
# Some configs default to the real vocabulary's special ids (50256, 32000); keep them inside the tiny one.
_IDS = dict(bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1)
_BERT_LIKE = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN,
                  vocab_size=VOCAB, max_position_embeddings=POSITIONS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@dataclass(frozen=True)
class ZooEntry:
    arch: str  # the config's model_type (PEFT's table key)
    model: str  # transformers model class
    config: str  # transformers config class
    kwargs: dict[str, Any]
    kind: str  # "causal-lm", "encoder", "seq2seq", "vision"
    targets: list[str] | None = None  # None: PEFT's default for the architecture
    inputs: dict[str, Any] = field(default_factory=dict)


ZOO: list[ZooEntry] = [
    ZooEntry("gpt2", "GPT2LMHeadModel", "GPT2Config", dict(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, vocab_size=VOCAB, n_positions=POSITIONS,
             resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **_IDS), "causal-lm"),
    ZooEntry("llama", "LlamaForCausalLM", "LlamaConfig", dict(_LLAMA_LIKE, tie_word_embeddings=False), "causal-lm"),
    ZooEntry("mistral", "MistralForCausalLM", "MistralConfig", dict(_LLAMA_LIKE, sliding_window=48, tie_word_embeddings=False), "causal-lm"),
    ZooEntry("qwen2", "Qwen2ForCausalLM", "Qwen2Config", dict(_LLAMA_LIKE, tie_word_embeddings=True, use_sliding_window=False), "causal-lm"),
    ZooEntry("qwen3", "Qwen3ForCausalLM", "Qwen3Config", dict(_LLAMA_LIKE, head_dim=8, tie_word_embeddings=True, use_sliding_window=False), "causal-lm"),
    ZooEntry("gemma", "GemmaForCausalLM", "GemmaConfig", dict(_LLAMA_LIKE, head_dim=8), "causal-lm"),
    ZooEntry("gemma2", "Gemma2ForCausalLM", "Gemma2Config", dict(_LLAMA_LIKE, head_dim=8, sliding_window=48, query_pre_attn_scalar=8), "causal-lm"),
    ZooEntry("phi", "PhiForCausalLM", "PhiConfig", dict(_LLAMA_LIKE, resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0), "causal-lm"),
    ZooEntry("phi3", "Phi3ForCausalLM", "Phi3Config", dict(_LLAMA_LIKE, **_IDS, pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0,
             tie_word_embeddings=False), "causal-lm", targets=["qkv_proj", "o_proj"]),
    ZooEntry("gpt_neox", "GPTNeoXForCausalLM", "GPTNeoXConfig", dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
             intermediate_size=FFN, vocab_size=VOCAB, max_position_embeddings=POSITIONS, hidden_dropout=0.0, attention_dropout=0.0), "causal-lm"),
    ZooEntry("opt", "OPTForCausalLM", "OPTConfig", dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, ffn_dim=FFN,
             word_embed_proj_dim=HIDDEN, vocab_size=VOCAB, max_position_embeddings=POSITIONS, dropout=0.0, attention_dropout=0.0), "causal-lm"),
    ZooEntry("bloom", "BloomForCausalLM", "BloomConfig", dict(hidden_size=HIDDEN, n_layer=LAYERS, n_head=HEADS, vocab_size=VOCAB,
             hidden_dropout=0.0, attention_dropout=0.0), "causal-lm"),
    ZooEntry("falcon", "FalconForCausalLM", "FalconConfig", dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
             vocab_size=VOCAB, hidden_dropout=0.0, attention_dropout=0.0, new_decoder_architecture=False, multi_query=True), "causal-lm"),
    ZooEntry("gptj", "GPTJForCausalLM", "GPTJConfig", dict(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, rotary_dim=4, vocab_size=VOCAB,
             n_positions=POSITIONS, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **_IDS), "causal-lm"),
    ZooEntry("olmo2", "Olmo2ForCausalLM", "Olmo2Config", dict(_LLAMA_LIKE, **_IDS, tie_word_embeddings=False), "causal-lm", targets=["q_proj", "v_proj"]),
    ZooEntry("starcoder2", "Starcoder2ForCausalLM", "Starcoder2Config", dict(_LLAMA_LIKE, **_IDS, residual_dropout=0.0, embedding_dropout=0.0,
             attention_dropout=0.0, sliding_window=None), "causal-lm", targets=["q_proj", "v_proj"]),
    ZooEntry("mixtral", "MixtralForCausalLM", "MixtralConfig", dict(_LLAMA_LIKE, num_local_experts=4, num_experts_per_tok=2, sliding_window=None,
             tie_word_embeddings=False), "causal-lm"),
    ZooEntry("bert", "BertForSequenceClassification", "BertConfig", dict(_BERT_LIKE, num_labels=3), "encoder"),
    ZooEntry("roberta", "RobertaForSequenceClassification", "RobertaConfig", dict(_BERT_LIKE, max_position_embeddings=POSITIONS + 2, num_labels=3), "encoder"),
    ZooEntry("distilbert", "DistilBertForSequenceClassification", "DistilBertConfig", dict(dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=FFN,
             vocab_size=VOCAB, max_position_embeddings=POSITIONS, dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0, num_labels=3),
             "encoder", targets=["q_lin", "v_lin"]),
    ZooEntry("deberta-v2", "DebertaV2ForSequenceClassification", "DebertaV2Config", dict(_BERT_LIKE, num_labels=3, relative_attention=True,
             position_buckets=8, pos_att_type=["p2c", "c2p"]), "encoder"),
    ZooEntry("electra", "ElectraForSequenceClassification", "ElectraConfig", dict(_BERT_LIKE, embedding_size=HIDDEN, num_labels=3), "encoder"),
    ZooEntry("t5", "T5ForConditionalGeneration", "T5Config", dict(d_model=HIDDEN, d_kv=8, d_ff=FFN, num_layers=LAYERS, num_heads=HEADS,
             vocab_size=VOCAB, dropout_rate=0.0, decoder_start_token_id=0), "seq2seq"),
    ZooEntry("bart", "BartForConditionalGeneration", "BartConfig", dict(d_model=HIDDEN, encoder_layers=LAYERS, decoder_layers=LAYERS,
             encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=FFN, decoder_ffn_dim=FFN, vocab_size=VOCAB,
             max_position_embeddings=POSITIONS, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0), "seq2seq"),
    ZooEntry("vit", "ViTForImageClassification", "ViTConfig", dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
             intermediate_size=FFN, image_size=16, patch_size=4, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
             "vision", targets=["q_proj", "v_proj"]),
]

BY_ARCH = {e.arch: e for e in ZOO}


def available() -> list[ZooEntry]:
    """The entries this transformers version has classes for (an older one may lack e.g. Olmo2)."""
    return [e for e in ZOO if hasattr(transformers, e.model) and hasattr(transformers, e.config)]


def build(arch: str, seed: int = 0) -> torch.nn.Module:
    """The tiny model of `arch`, seeded (same seed, same weights on any machine)."""
    if arch not in BY_ARCH:
        raise ValueError(f"unknown zoo architecture {arch!r}; expected one of {sorted(BY_ARCH)}")
    e = BY_ARCH[arch]
    cfg = getattr(transformers, e.config)(**e.kwargs)
    return _seeded(getattr(transformers, e.model)(cfg), seed)


def targets(arch: str) -> list[str]:
    """The modules a zoo adapter adapts: PEFT's default for the architecture, else the entry's own list."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as table

    e = BY_ARCH[arch]
    found = table.get(arch)
    return list(e.targets if e.targets is not None else found or [])


def example_inputs(arch: str, batch: int = 2, seq: int = 8, seed: int = 1) -> dict[str, torch.Tensor]:
    """Seeded model inputs of the right kind (token ids; pixels for ViT; decoder ids for seq2seq)."""
    e = BY_ARCH[arch]
    gen = torch.Generator().manual_seed(seed)
    if e.kind == "vision":
        size = e.kwargs["image_size"]
        return {"pixel_values": torch.randn(batch, 3, size, size, generator=gen)}
    ids = torch.randint(1, VOCAB, (batch, seq), generator=gen)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if e.kind == "seq2seq":
        out["decoder_input_ids"] = torch.randint(1, VOCAB, (batch, seq // 2), generator=gen)
    return out
