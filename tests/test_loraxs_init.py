"""LoRA-XS SVD init against float64 references and scikit-learn; the random ablation."""

import pytest
import torch
from conftest import BERT_TARGETS, tiny_bert
from torch import nn

from loraxs import AdapterConfig, inject_adapters, truncated_svd
from loraxs.layers import XSLayer


def decaying_weight(d_out=24, d_in=20, seed=0) -> torch.Tensor:
    """A weight with well separated singular values, so the rank-r truncation is unique."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(d_out, d_out, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d_in, d_in, generator=g, dtype=torch.float64))
    k = min(d_out, d_in)
    s = 2.0 * 0.7 ** torch.arange(k, dtype=torch.float64)
    return u[:, :k] @ torch.diag(s) @ v[:, :k].T


@pytest.mark.parametrize("backend", ["krylov", "randomized", "torch", "torch_lowrank", "sklearn"])
def test_update_with_r_equal_cI_is_scaled_truncation(backend):
    w64 = decaying_weight()
    r, alpha, c = 5, 16.0, 0.3
    layer = XSLayer(nn.Linear(20, 24, bias=False), rank=r, scale=alpha / r)
    with torch.no_grad():
        layer.base_layer.weight.copy_(w64.float())
    cfg = AdapterConfig(method="loraxs", rank=r, alpha=alpha, svd_backend=backend)
    from loraxs.init import init_xs_svd

    init_xs_svd({"l": layer}, cfg)
    with torch.no_grad():
        layer.lora_R.copy_(c * torch.eye(r))
    u, s, vh = torch.linalg.svd(w64)
    ref = c * (alpha / r) * u[:, :r] @ torch.diag(s[:r]) @ vh[:r]
    torch.testing.assert_close(layer.delta_weight().double(), ref, rtol=1e-4, atol=1e-5)
    # B = U_r has orthonormal columns; A = Σ_r V_rᵀ has row norms Σ_r
    torch.testing.assert_close(layer.lora_B.T @ layer.lora_B, torch.eye(r), atol=1e-5, rtol=0)
    torch.testing.assert_close(layer.lora_A.norm(dim=1).double(), s[:r], rtol=1e-5, atol=0)


def test_factors_agree_with_sklearn_truncated_svd_up_to_sign():
    from sklearn.decomposition import TruncatedSVD

    w = decaying_weight().float()
    r = 6
    u, s, vh = truncated_svd(w, r, backend="torch")
    svd = TruncatedSVD(n_components=r, n_iter=10, random_state=42).fit(w.T.numpy())
    B_sk = torch.from_numpy(svd.components_.T.copy())  # (d_out, r)
    A_sk = torch.from_numpy(svd.transform(w.T.numpy()).T.copy())  # (r, d_in) = Σ Vᵀ
    A, B = s[:, None] * vh, u
    signs = torch.sign((B * B_sk).sum(0))
    assert (signs.abs() == 1).all()
    torch.testing.assert_close(B * signs, B_sk, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(A * signs[:, None], A_sk, atol=1e-5, rtol=1e-4)


def test_sign_rule_makes_largest_entry_of_each_u_column_positive():
    w = decaying_weight().float()
    for backend in ("krylov", "randomized", "torch", "torch_lowrank", "sklearn"):
        u, _, _ = truncated_svd(w, 4, backend=backend)
        idx = u.abs().argmax(0)
        assert (u[idx, torch.arange(4)] > 0).all(), backend
    a = truncated_svd(w, 4, backend="torch")
    for backend in ("krylov", "randomized", "torch_lowrank"):
        b = truncated_svd(w.clone(), 4, backend=backend)
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)


def _excess_error(w: torch.Tensor, u, s, vh) -> torch.Tensor:
    """(‖W − U S Vh‖_F − ‖W − W_r‖_F) / ‖W − W_r‖_F per weight, in float64."""
    w64 = w.double()
    opt = torch.linalg.svdvals(w64)[..., s.shape[-1] :].pow(2).sum(-1).sqrt()
    err = torch.linalg.matrix_norm(w64 - (u.double() * s.double().unsqueeze(-2)) @ vh.double())
    return err / opt - 1


@pytest.mark.parametrize("backend", ["krylov", "randomized"])
def test_fast_backends_at_least_as_accurate_as_the_official_sklearn_path(backend):
    """Flat (random) spectra are the hard case for randomised SVD; shapes wider than the product block
    (1024 columns) take the blocked ``Yᵀ W`` path, the square one the plain product; the decaying
    spectrum is what pretrained weights look like."""
    g = torch.Generator().manual_seed(3)
    wide = torch.randn(3, 96, 1100, generator=g)
    square = torch.randn(3, 128, 128, generator=g)
    decaying = torch.stack([decaying_weight(200, 300, seed=i) for i in range(2)]).float()
    for weights in (wide, square, decaying):
        u, s, vh = truncated_svd(weights, 8, backend=backend)
        ours = _excess_error(weights, u, s, vh)
        official = _excess_error(weights, *truncated_svd(weights, 8, backend="sklearn"))
        assert (ours <= official * 1.05 + 1e-6).all(), (ours, official)
        assert (ours < 0.02).all()
        eye = torch.eye(8).expand(len(weights), 8, 8)
        torch.testing.assert_close(u.mT @ u, eye, atol=1e-5, rtol=0)
        torch.testing.assert_close(vh @ vh.mT, eye, atol=1e-5, rtol=0)


def rounding_bounds(w: torch.Tensor, rank: int, n_products: int) -> tuple[float, float]:
    """How far two float32 runs of one randomised SVD may differ when only rounding differs (another chunking,
    thread count or CPU): ``(singular vectors, singular values)``, from the exact float64 spectrum of ``w``.

    Model: each of the ``n_products`` products with ``W`` or ``Wᵀ`` is backward stable, so a run computes the
    factors of ``W + E`` with ``‖E‖₂ ≤ n_products · eps · σ₁``. Singular values move by at most ``‖E‖₂`` (Weyl);
    the top-r singular vectors by at most ``‖E‖₂ / (σ_r − σ_{r+1})`` (Wedin). Random weights have nearly flat
    spectra (here σ₅ − σ₆ ≈ 0.004 σ₁), so their vectors are the hard case.
    """
    s = torch.linalg.svdvals(w.double())  # (b, k)
    e = n_products * torch.finfo(torch.float32).eps * s[..., 0]
    return float((e / (s[..., rank - 1] - s[..., rank])).max()), float(e.max())


@pytest.mark.parametrize("backend", ["krylov", "randomized"])
def test_fast_backends_deterministic_chunk_independent_and_rank_deficient(monkeypatch, backend):
    import loraxs.rsvd

    g = torch.Generator().manual_seed(4)
    w = torch.randn(3, 40, 2100, generator=g)
    a, b = truncated_svd(w, 5, backend=backend), truncated_svd(list(w.clone()), 5, backend=backend)
    for x, y in zip(a, b):  # same machine, same chunks: bit-identical
        assert torch.equal(x, y)
    # one weight per chunk, or one thread instead of several: other GEMM kernels and summation orders, the
    # same factors up to rounding (bit-identical on some CPUs, ~1e-5 apart on others)
    n_products = 2 * 4 + 2 if backend == "krylov" else 2 * 10 + 2
    tol_vectors, tol_values = rounding_bounds(w, 5, n_products)
    assert 1e-4 < tol_vectors < 1e-3  # n_products · eps / (relative gap): a bound that can fail
    monkeypatch.setattr(loraxs.rsvd, "CHUNK_BYTES", 1)
    chunked = truncated_svd(list(w), 5, backend=backend)
    monkeypatch.undo()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_thread = truncated_svd(w, 5, backend=backend)
    finally:
        torch.set_num_threads(threads)
    for other in (chunked, one_thread):
        torch.testing.assert_close(other[0], a[0], rtol=0, atol=tol_vectors)
        torch.testing.assert_close(other[1], a[1], rtol=0, atol=tol_values)
        torch.testing.assert_close(other[2], a[2], rtol=0, atol=tol_vectors)
    with pytest.raises(ValueError, match=r"one shape, got \[\(3, 4\), \(4, 4\)\]"):
        truncated_svd([torch.ones(3, 4), torch.ones(4, 4)], 2, backend=backend)
    # rank 3 < q: singular Cholesky Grams take the Householder fallback; r = 5 > rank takes the exact
    # small SVD (Vh = S⁻¹ Uᵀ B would divide by zero)
    low = torch.randn(300, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 500, generator=g, dtype=torch.float64)
    for r in (3, 5):
        u, s, vh = truncated_svd(low.float(), r, backend=backend)
        assert torch.isfinite(u).all() and torch.isfinite(vh).all()
        torch.testing.assert_close((u * s) @ vh, low.float(), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(s[:3].double(), torch.linalg.svdvals(low)[:3], rtol=1e-5, atol=0)


def test_blocked_rows_product_and_gram_small_svd_match_plain_ones():
    from loraxs.rsvd import rows_times, small_svd

    g = torch.Generator().manual_seed(5)
    w = torch.randn(2, 40, 2100, generator=g)
    yt = torch.randn(2, 16, 40, generator=g)
    torch.testing.assert_close(rows_times(yt, w), torch.bmm(yt, w), rtol=1e-5, atol=1e-5)
    b = torch.randn(2, 24, 300, generator=g, dtype=torch.float64)
    u, s, vh = small_svd(b, 6)
    u_ref, s_ref, vh_ref = torch.linalg.svd(b, full_matrices=False)
    torch.testing.assert_close(s, s_ref[:, :6], rtol=1e-10, atol=0)
    signs = torch.sign((u * u_ref[..., :6]).sum(-2, keepdim=True))
    torch.testing.assert_close(u * signs, u_ref[..., :6], rtol=0, atol=1e-8)
    torch.testing.assert_close(vh * signs.mT, vh_ref[:, :6], rtol=0, atol=1e-8)


def test_inject_loraxs_output_near_base_and_r_init_std():
    model = tiny_bert()
    ids = torch.randint(1, 64, (2, 8))
    base = model(input_ids=ids).logits
    torch.manual_seed(0)
    inject_adapters(model, AdapterConfig(method="loraxs", rank=8, target_modules=BERT_TARGETS, svd_backend="torch"))
    rs = torch.cat([m.lora_R.flatten() for m in model.modules() if isinstance(m, XSLayer)])
    assert 0.7e-5 < rs.std().item() < 1.3e-5
    torch.testing.assert_close(model(input_ids=ids).logits, base, atol=1e-4, rtol=0)
    # frozen parts
    for m in model.modules():
        if isinstance(m, XSLayer):
            assert not m.lora_A.requires_grad and not m.lora_B.requires_grad and m.lora_R.requires_grad
            assert not m.base_layer.weight.requires_grad


def test_loraxs_random_is_seeded_kaiming_in_official_layout():
    def factors(seed):
        model = tiny_bert()
        inject_adapters(model, AdapterConfig(method="loraxs_random", rank=4, target_modules=["query"], seed=seed))
        return [(m.lora_A.clone(), m.lora_B.clone()) for m in model.modules() if isinstance(m, XSLayer)]

    f1, f2, f3 = factors(1), factors(1), factors(2)
    for (a1, b1), (a2, b2) in zip(f1, f2):
        assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert not torch.equal(f1[0][0], f3[0][0])
    assert not torch.equal(f1[0][0], f1[1][0]), "each module gets its own draw"
    a, b = f1[0]  # A (r=4, d_in=32): bound 1/sqrt(r); B (d_out=32, r): bound 1/sqrt(d_out)
    assert a.abs().max() <= 0.5 and a.abs().max() > 0.4
    assert b.abs().max() <= 32**-0.5 and b.abs().max() > 0.8 * 32**-0.5
