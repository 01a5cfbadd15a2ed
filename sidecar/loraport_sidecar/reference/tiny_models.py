"""Small transformers models built from configs with fixed, seeded weights.

Parity never needs real base weights: a model of the same architecture and shapes with any fixed weights
exercises the same arithmetic. Every builder is deterministic (same seed, same weights, on any machine).
"""

from __future__ import annotations

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    RobertaConfig,
    RobertaForSequenceClassification,
)


def _seeded(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Re-initialise every parameter from one generator: N(0, 0.02) for matrices, small noise for vectors.

    transformers' own init depends on its version; this does not.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
            else:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen) if p.shape[0] and _looks_like_norm(p) else 0.02 * torch.randn(p.shape, generator=gen))
    model.eval()
    return model


def _looks_like_norm(p: torch.Tensor) -> bool:
    # LayerNorm / RMSNorm weights start near one in every real model; keep that so activations stay sane.
    return bool((p.detach() - 1.0).abs().max().item() < 1e-6)


def gpt2(n_embd: int = 64, n_layer: int = 2, n_head: int = 4, vocab_size: int = 128, n_positions: int = 64, seed: int = 0) -> GPT2LMHeadModel:
    """A small GPT-2 (transformers Conv1D projections; fused c_attn like the paper's NLG model)."""
    cfg = GPT2Config(n_embd=n_embd, n_layer=n_layer, n_head=n_head, vocab_size=vocab_size, n_positions=n_positions,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
                     bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
    return _seeded(GPT2LMHeadModel(cfg), seed)


def llama(hidden_size: int = 64, num_hidden_layers: int = 2, num_attention_heads: int = 4, num_key_value_heads: int = 2,
          intermediate_size: int = 128, vocab_size: int = 128, seed: int = 0) -> LlamaForCausalLM:
    """A small Llama-style model (q/k/v/o and gate/up/down projections, GQA, RMSNorm)."""
    cfg = LlamaConfig(hidden_size=hidden_size, num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                      num_key_value_heads=num_key_value_heads, intermediate_size=intermediate_size, vocab_size=vocab_size,
                      max_position_embeddings=128, tie_word_embeddings=False)
    return _seeded(LlamaForCausalLM(cfg), seed)


def qwen2(hidden_size: int = 64, num_hidden_layers: int = 2, num_attention_heads: int = 4, num_key_value_heads: int = 2,
          intermediate_size: int = 128, vocab_size: int = 128, seed: int = 0) -> Qwen2ForCausalLM:
    """A small Qwen2 (q/k/v projections with bias, GQA, RMSNorm, tied embeddings like the small Qwen2 models)."""
    cfg = Qwen2Config(hidden_size=hidden_size, num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                      num_key_value_heads=num_key_value_heads, intermediate_size=intermediate_size, vocab_size=vocab_size,
                      max_position_embeddings=128, tie_word_embeddings=True, use_sliding_window=False)
    return _seeded(Qwen2ForCausalLM(cfg), seed)


def mistral(hidden_size: int = 64, num_hidden_layers: int = 2, num_attention_heads: int = 4, num_key_value_heads: int = 1,
            intermediate_size: int = 128, vocab_size: int = 128, sliding_window: int | None = 48, seed: int = 0) -> MistralForCausalLM:
    """A small Mistral (GQA down to one KV head; a sliding window shorter than its positions, so the mask matters)."""
    cfg = MistralConfig(hidden_size=hidden_size, num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                        num_key_value_heads=num_key_value_heads, intermediate_size=intermediate_size, vocab_size=vocab_size,
                        max_position_embeddings=128, sliding_window=sliding_window, tie_word_embeddings=False)
    return _seeded(MistralForCausalLM(cfg), seed)


def roberta(hidden_size: int = 64, num_hidden_layers: int = 2, num_attention_heads: int = 4, intermediate_size: int = 128,
            vocab_size: int = 128, num_labels: int = 3, seed: int = 0) -> RobertaForSequenceClassification:
    """A small RoBERTa with a sequence-classification head (the MNLI shape: dense + out_proj)."""
    cfg = RobertaConfig(hidden_size=hidden_size, num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                        intermediate_size=intermediate_size, vocab_size=vocab_size, num_labels=num_labels,
                        max_position_embeddings=130, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return _seeded(RobertaForSequenceClassification(cfg), seed)


def gpt2_medium_shapes(n_layer: int = 24, seed: int = 0) -> GPT2LMHeadModel:
    """GPT-2 Medium's shapes (n_embd 1024, 16 heads, 50257 vocab) with seeded weights, for the published E2E checkpoint."""
    return gpt2(n_embd=1024, n_layer=n_layer, n_head=16, vocab_size=50257, n_positions=1024, seed=seed)


def roberta_base_shapes(n_layer: int = 12, seed: int = 0) -> RobertaForSequenceClassification:
    """RoBERTa-base's shapes (hidden 768, 12 heads, 50265 vocab) with seeded weights, for the published MNLI checkpoint."""
    return roberta(hidden_size=768, num_hidden_layers=n_layer, num_attention_heads=12, intermediate_size=3072,
                   vocab_size=50265, num_labels=3, seed=seed)


BUILDERS = {"gpt2": gpt2, "llama": llama, "qwen2": qwen2, "mistral": mistral, "roberta": roberta, "gpt2-medium": gpt2_medium_shapes, "roberta-base": roberta_base_shapes}


def build(family: str, **kwargs) -> torch.nn.Module:
    if family not in BUILDERS:
        raise ValueError(f"unknown tiny model family {family!r}; expected one of {sorted(BUILDERS)}")
    return BUILDERS[family](**kwargs)


def save(model: torch.nn.Module, folder: str) -> None:
    """Write a Hugging Face model folder (config.json + model.safetensors)."""
    model.save_pretrained(folder, safe_serialization=True)
