"""LoRA-SB: B R A equals the rank-r truncation of −η_eff·sign(G), G computed independently in float64."""

import copy

import torch
from conftest import BERT_TARGETS, bert_batch, tiny_bert

from loraxs import AdapterConfig, LoraSBInit, adapter_layers, effective_lr, inject_adapters, lorasb_init


def independent_gradients_float64(model, batches, n):
    """Σ_b ∂(L_b / n_b)/∂W over the first n samples, on a float64 copy, with torch.autograd.grad."""
    m64 = copy.deepcopy(model).double().train()
    targets = {
        k: v
        for k, v in m64.named_modules()
        if k.endswith(("query", "value", "output.dense")) and not k.startswith("classifier")
    }
    sums = {k: torch.zeros_like(v.weight) for k, v in targets.items()}
    seen = 0
    for batch in batches:
        take = min(len(batch["labels"]), n - seen)
        if take <= 0:
            break
        out = m64(**{k: v[:take] for k, v in batch.items()})
        grads = torch.autograd.grad(out.loss / take, [t.weight for t in targets.values()])
        for k, g in zip(targets, grads):
            sums[k] += g
        seen += take
    return sums


def test_lorasb_factors_equal_truncated_sign_update_float64():
    model = tiny_bert()
    batches = [bert_batch(3, seed=1), bert_batch(3, seed=2)]
    n, r, lr, warmup, steps = 5, 4, 1e-3, 0.1, 50
    g64 = independent_gradients_float64(model, batches, n)
    base = copy.deepcopy(model)
    cfg = AdapterConfig(method="lorasb", rank=r, target_modules=BERT_TARGETS, lorasb_n_samples=n, svd_backend="torch")
    eta = effective_lr("warmup_optimizer_steps", lr, warmup, optimizer_steps=steps)
    assert eta == lr / (warmup * steps)
    inject_adapters(model, cfg, init=lorasb_init(model, cfg, batches, eta))
    layers = adapter_layers(model)
    assert set(layers) == set(g64)
    for name, layer in layers.items():
        dw = -eta * torch.sign(g64[name])
        u, s, vh = torch.linalg.svd(dw)
        ref = u[:, :r] @ torch.diag(s[:r]) @ vh[:r]
        torch.testing.assert_close(layer.delta_weight().double(), ref, rtol=1e-4, atol=1e-5 * eta)
        assert layer.scale == 1.0
        R = layer.lora_R.detach()
        torch.testing.assert_close(R, torch.diag(torch.diagonal(R)))  # R = diag(S) at init
        # B = V, A = Uᵀ: orthonormal
        torch.testing.assert_close(layer.lora_B.T @ layer.lora_B, torch.eye(r), atol=1e-5, rtol=0)
        torch.testing.assert_close(layer.lora_A @ layer.lora_A.T, torch.eye(r), atol=1e-5, rtol=0)

    # the base weights are unchanged, and the output at init is the base model's with W + B R A
    with torch.no_grad():
        for name, layer in layers.items():
            assert torch.equal(layer.base_layer.weight, base.get_submodule(name).weight)
            base.get_submodule(name).weight += layer.delta_weight()
    ids = bert_batch(2, seed=9)["input_ids"]
    torch.testing.assert_close(model(input_ids=ids).logits, base(input_ids=ids).logits, rtol=1e-5, atol=1e-6)
    # every requires_grad flag is back where the method wants it
    assert all(
        not p.requires_grad
        for n, p in model.named_parameters()
        if not n.endswith("lora_R") and not n.startswith("classifier")
    )


def test_lorasb_official_randomised_svd_and_precomputed_gradients():
    """Default-shaped path: torch.svd_lowrank with q = r (oversample 0), niter 10; gradients passed in."""
    model = tiny_bert()
    names = [n for n, m in model.named_modules() if n.endswith("query")]
    g = torch.Generator().manual_seed(0)
    # a rank-2 gradient: sign(u vᵀ) = sign(u) sign(v)ᵀ is exactly rank 1
    grads = {n: torch.outer(torch.randn(32, generator=g), torch.randn(32, generator=g)) for n in names}
    cfg = AdapterConfig(
        method="lorasb",
        rank=2,
        target_modules=["query"],
        svd_backend="torch_lowrank",
        svd_oversample=0,
        lorasb_lr_rule="lr",
    )
    inject_adapters(model, cfg, init=LoraSBInit(gradients=grads, eta=0.5))
    for n, layer in adapter_layers(model).items():
        torch.testing.assert_close(layer.delta_weight(), -0.5 * torch.sign(grads[n]), atol=1e-5, rtol=1e-5)


def test_effective_lr_official_rule_counts_batches_of_the_estimate_not_optimizer_steps():
    """Official: η_eff = lr / (warmup_ratio · len(loader at eg_bs) · epochs), whatever the optimizer steps.
    Math (lora-sb train_arithmetic.py): 50,000 samples, eg_bs 3, 1 epoch -> 16,667 batches; commonsense
    (train_cr.py): Commonsense170K, eg_bs 10, 2 epochs -> 34,084; GLUE: the training batch, = optimizer steps."""
    math_eta = effective_lr("warmup", 1e-4, 0.02, n_train=50_000, batch_size=3, epochs=1, optimizer_steps=1_563)
    assert math_eta == 1e-4 / (0.02 * 16_667)
    # the old rule over optimizer steps (50,000 / 32 = 1,563) made the first update 10.7x too large
    old = effective_lr("warmup_optimizer_steps", 1e-4, 0.02, optimizer_steps=1_563)
    assert round(old / math_eta, 1) == 10.7
    cs_eta = effective_lr("warmup", 2e-3, 0.02, n_train=170_420, batch_size=10, epochs=2)
    assert cs_eta == 2e-3 / (0.02 * 34_084)
    assert effective_lr("lr", 5e-4) == 5e-4


def test_estimate_is_the_same_whatever_the_batches_and_per_batch_seeds():
    """Sums in float64; the dropout of batch k is drawn from seed + k (the float64 reference test above checks the
    sums themselves, each batch's loss divided by its size as the official code)."""
    from loraxs.lorasb import estimate_gradients

    model = tiny_bert(hidden_dropout_prob=0.2)
    names = [n for n, m in model.named_modules() if n.endswith("query")]
    batches = [bert_batch(3, seed=1), bert_batch(3, seed=2)]
    a = estimate_gradients(model, names, batches, n_samples=5, seed=7)
    b = estimate_gradients(model, names, batches, n_samples=5, seed=7)
    c = estimate_gradients(model, names, batches, n_samples=5, seed=8)
    assert all(torch.equal(a[n], b[n]) and a[n].dtype == torch.float64 for n in names)
    assert not all(torch.equal(a[n], c[n]) for n in names)  # other dropout masks
