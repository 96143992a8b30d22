"""LoRA-SB: B R A equals the rank-r truncation of −η_eff·sign(G), G computed independently in float64."""

import copy

import torch
from conftest import BERT_TARGETS, bert_batch, tiny_bert

from loraxs import AdapterConfig, adapter_layers, inject_adapters


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
    inject_adapters(model, cfg, batches=batches, lr=lr, warmup_ratio=warmup, total_steps=steps)
    eta = lr / (warmup * steps)
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
    inject_adapters(model, cfg, gradients=grads, lr=0.5)
    for n, layer in adapter_layers(model).items():
        torch.testing.assert_close(layer.delta_weight(), -0.5 * torch.sign(grads[n]), atol=1e-5, rtol=1e-5)
