"""The fused layers against their equations: float64 gradcheck, forward reference, dtypes, counts."""

import pytest
import torch
from conftest import BERT_TARGETS, tiny_bert, tiny_gpt2
from torch import nn

from loraxs import AdapterConfig, count_trainable, inject_adapters
from loraxs.layers import LoraLayer, XSLayer, _LoraFn, _XSFn, reference_forward


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("split", [False, True])
def test_xs_function_gradcheck_float64(split):
    n, d_in, d_out, r = 5, 7, 6, 3
    x = _rand(n, d_in, seed=1).requires_grad_()
    xd = _rand(n, d_in, seed=2).requires_grad_() if split else None
    w_t, b = _rand(d_in, d_out, seed=3), _rand(d_out, seed=4)
    A, B = _rand(r, d_in, seed=5), _rand(d_out, r, seed=6)
    sR = _rand(r, r, seed=7).requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: _XSFn.apply(*a), (x, xd, w_t, b, A, sR, B))
    y = _XSFn.apply(x, xd, w_t, b, A, sR, B)
    ref = x @ w_t + b + ((x if xd is None else xd) @ A.T) @ sR.T @ B.T
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("split", [False, True])
def test_lora_function_gradcheck_float64(split):
    n, d_in, d_out, r, s = 5, 7, 6, 3, 2.5
    x = _rand(n, d_in, seed=1).requires_grad_()
    xd = _rand(n, d_in, seed=2).requires_grad_() if split else None
    w_t, b = _rand(d_in, d_out, seed=3), _rand(d_out, seed=4)
    A, B = _rand(r, d_in, seed=5).requires_grad_(), _rand(d_out, r, seed=6).requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: _LoraFn.apply(*a, s), (x, xd, w_t, b, A, B))


@pytest.mark.parametrize("cls", [LoraLayer, XSLayer])
@pytest.mark.parametrize("conv1d", [False, True])
def test_layer_forward_matches_dense_update(cls, conv1d):
    torch.manual_seed(0)
    if conv1d:
        from transformers.pytorch_utils import Conv1D

        base = Conv1D(6, 7)  # d_out=6, d_in=7, weight stored (7, 6)
    else:
        base = nn.Linear(7, 6)
    layer = cls(base, rank=3, scale=2.0)
    with torch.no_grad():
        for p in (layer.lora_A, layer.lora_B) + ((layer.lora_R,) if cls is XSLayer else ()):
            p.normal_()
    x = torch.randn(2, 4, 7)
    torch.testing.assert_close(layer(x), reference_forward(layer, x), rtol=1e-5, atol=1e-5)
    assert layer.delta_weight().shape == (6, 7)


@pytest.mark.parametrize("mode", ["bf16_weights", "autocast"])
def test_bfloat16_forward_backward(mode):
    model = tiny_bert()
    if mode == "bf16_weights":
        model = model.to(torch.bfloat16)
    inject_adapters(model, AdapterConfig(method="loraxs", rank=4, target_modules=BERT_TARGETS))
    layer = next(m for m in model.modules() if isinstance(m, XSLayer))
    # adapter tensors and the head train in float32 whatever the base dtype (PEFT and the official code)
    assert layer.lora_A.dtype == layer.lora_B.dtype == layer.lora_R.dtype == torch.float32
    assert model.classifier.weight.dtype == torch.float32
    base = torch.bfloat16 if mode == "bf16_weights" else torch.float32
    assert model.bert.embeddings.word_embeddings.weight.dtype == layer.base_layer.weight.dtype == base
    ids = torch.randint(1, 64, (2, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
        out = model(input_ids=ids, labels=torch.tensor([0, 1]))
    assert out.logits.dtype == (torch.float32 if mode == "bf16_weights" else torch.bfloat16)  # fp32 head
    out.loss.backward()
    assert layer.lora_R.grad is not None and layer.lora_R.grad.dtype == torch.float32
    assert torch.isfinite(layer.lora_R.grad).all() and layer.lora_R.grad.abs().sum() > 0


def test_bf16_llama_keeps_r_in_float32_and_a_small_adamw_step_changes_it():
    """In bf16, 1 + 1e-3 == 1: a bf16 R would not move. R stays float32 and an AdamW step of lr 1e-3 changes it."""
    from conftest import tiny_llama

    assert torch.tensor(1.0, dtype=torch.bfloat16) + 1e-3 == 1.0
    model = tiny_llama().to(torch.bfloat16)
    llama = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    inject_adapters(model, AdapterConfig(method="loraxs", rank=4, target_modules=llama, modules_to_save=[]))
    rs = [m.lora_R for m in model.modules() if isinstance(m, XSLayer)]
    assert len(rs) == 14 and all(r.dtype == torch.float32 for r in rs)
    with torch.no_grad():
        for r in rs:
            r.fill_(1.0)  # where a bf16 step of 1e-3 would round away
    before = [r.detach().clone() for r in rs]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    ids = torch.randint(1, 64, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    moved = [float((r.detach() - b).abs().max()) for r, b in zip(rs, before)]
    assert all(m == pytest.approx(1e-3, rel=1e-3) for m in moved if m > 0) and sum(m > 0 for m in moved) >= 10
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.endswith("lora_R"))


def test_roberta_large_counts_match_papers():
    """METHODS.md §2: RoBERTa-large, 96 modules; built from its config on the meta device (no weights)."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    cfg = RobertaConfig(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        vocab_size=50265,
        max_position_embeddings=514,
        type_vocab_size=1,
        num_labels=2,
    )
    expected = {
        ("loraxs", 8): 6_144,
        ("loraxs", 16): 24_576,
        ("loraxs", 24): 55_296,
        ("lorasb", 16): 24_576,
        ("lora", 8): 2_162_688,
    }
    for (method, r), n in expected.items():
        with torch.device("meta"):
            model = RobertaForSequenceClassification(cfg)
        inject_adapters(model, AdapterConfig(method=method, rank=r, target_modules=BERT_TARGETS), init=False)
        counts = count_trainable(model)
        assert counts.adapter == n, (method, r)
        assert sum(isinstance(m, (XSLayer, LoraLayer)) for m in model.modules()) == 96
        # classifier: dense 1024x1024 + bias, out_proj 1024x2 + bias
        assert counts.head == 1024 * 1024 + 1024 + 1024 * 2 + 2
        assert counts.total == counts.adapter + counts.head


def test_full_counts_every_parameter():
    model = tiny_bert()
    inject_adapters(model, AdapterConfig(method="full"))
    counts = count_trainable(model)
    assert counts.total == sum(p.numel() for p in model.parameters())
    assert counts.head == sum(p.numel() for p in model.classifier.parameters())


def test_gpt2_conv1d_is_wrapped():
    model = tiny_gpt2()
    inject_adapters(
        model, AdapterConfig(method="loraxs", rank=4, target_modules=["c_attn", "c_proj"], modules_to_save=[])
    )
    layers = [m for m in model.modules() if isinstance(m, XSLayer)]
    assert len(layers) == 2 * 3 and all(m.fan_in_fan_out for m in layers)
    assert count_trainable(model).adapter == 6 * 16
