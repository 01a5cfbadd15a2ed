"""loralib wiring: real loralib layers on tiny HF models keep the base function, load checkpoints, merge exactly."""

import loralib as lora
import pytest
import torch

from loraport_sidecar.reference import tiny_models
from loraport_sidecar.reference.loralib_wiring import (
    apply_loralib,
    load_loralib_state,
    loralib_merged_weights,
    module_tree,
    normalize_loralib_state,
)


def _randomize_lora(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def test_gpt2_mergedlinear_keeps_base_and_merges_like_closed_form():
    model = tiny_models.gpt2(n_embd=32, n_layer=2, n_head=4)
    ids = torch.arange(10).unsqueeze(0)
    with torch.no_grad():
        base_logits = model(ids).logits
    base_w = {n: model.get_submodule(n).weight.detach().clone() for n in ("transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn")}
    apply_loralib(model, targets=["c_attn"], r=2, lora_alpha=8, enable_lora=[True, False, True])
    layer = model.transformer.h[0].attn.c_attn
    assert isinstance(layer, lora.MergedLinear) and layer.fan_in_fan_out
    model.train()
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, base_logits, atol=1e-6)  # B = 0: the base function is unchanged
    _randomize_lora(model)
    with torch.no_grad():
        unmerged = model(ids).logits
    merged = loralib_merged_weights(model)
    with torch.no_grad():
        merged_logits = model(ids).logits
    assert torch.allclose(unmerged, merged_logits, atol=1e-5)
    n, r, s = 32, 2, 8 / 2
    for name, w0 in base_w.items():
        m = model.get_submodule(name)
        A, B = m.lora_A.detach(), m.lora_B.detach()
        delta = torch.zeros(3 * n, n)
        delta[0:n] = B[0:n] @ A[0:r]
        delta[2 * n:] = B[n:] @ A[r:]
        expected = w0 + (delta * s).T
        assert torch.allclose(merged[f"{name}.weight"], expected, atol=1e-6)


def test_roberta_linear_query_value_and_checkpoint_loading():
    model = tiny_models.roberta(hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    apply_loralib(model, targets=["query", "value"], r=4, lora_alpha=16)
    q = model.roberta.encoder.layer[0].attention.self.query
    assert isinstance(q, lora.Linear) and not q.fan_in_fan_out
    assert not isinstance(model.roberta.encoder.layer[0].attention.self.key, lora.LoRALayer)
    gen = torch.Generator().manual_seed(3)
    ckpt = {f"module.{k}": torch.randn(v.shape, generator=gen) * 0.1 for k, v in model.state_dict().items() if "lora_" in k}
    ckpt["module.classifier.out_proj.bias"] = torch.tensor([0.5, -0.5, 0.25])
    w0 = q.weight.detach().clone()
    info = load_loralib_state(model, {"model_state_dict": ckpt})
    assert info["missing_lora"] == []
    assert torch.equal(model.classifier.out_proj.bias, torch.tensor([0.5, -0.5, 0.25]))
    merged = loralib_merged_weights(model)
    A = ckpt["module.roberta.encoder.layer.0.attention.self.query.lora_A"]
    B = ckpt["module.roberta.encoder.layer.0.attention.self.query.lora_B"]
    assert torch.allclose(merged["roberta.encoder.layer.0.attention.self.query.weight"], w0 + (B @ A) * (16 / 4), atol=1e-6)


def test_unexpected_checkpoint_key_is_named():
    model = tiny_models.roberta(hidden_size=32, num_hidden_layers=1, num_attention_heads=4)
    apply_loralib(model, targets=["query"], r=2, lora_alpha=2)
    with pytest.raises(KeyError, match="value.lora_A"):
        load_loralib_state(model, {"roberta.encoder.layer.0.attention.self.value.lora_A": torch.zeros(2, 32)})


def test_module_tree_and_normalize():
    tree = module_tree({"a.b.c_attn": ("conv1d", 8, 24), "a.q": ("linear", 8, 8), "emb": ("embedding", 10, 4)})
    assert tuple(tree.get_submodule("a.b.c_attn").weight.shape) == (8, 24)
    assert tuple(tree.get_submodule("a.q").weight.shape) == (8, 8)
    apply_loralib(tree, targets=["c_attn"], r=1, lora_alpha=1, enable_lora=[True, False, True])
    apply_loralib(tree, targets=["emb"], r=2, lora_alpha=4)
    assert isinstance(tree.emb, lora.Embedding)
    assert normalize_loralib_state({"model_state_dict": {"module.x.lora_A": 1}}) == {"x.lora_A": 1}
