"""Randomised truncated SVD of batches of weights: subspace iteration and block Krylov.

Both start from a Gaussian sketch and apply ``W Wᵀ`` repeatedly; they differ in what they keep
(Halko, Martinsson & Tropp 2011, Alg. 4.4; Musco & Musco 2015, Alg. 2), with ``q`` columns per block::

    Y_0 = orth(W Ω),  Ω ~ N(0, 1) (n, q)
    Y_j = orth(W orth(Wᵀ Y_{j-1}))              j = 1 .. k
    subspace iteration:  Q = qr(Y_k)                       (m, q)      scikit-learn, torch.svd_lowrank
    block Krylov:        Q = qr([Y_0, Y_1, ..., Y_k])      (m, q(k+1))
    B = Qᵀ W = U_B S Vh  (Rayleigh-Ritz);  U = Q U_B[:, :r]

Subspace iteration keeps only the last block; block Krylov keeps them all, which for the same
accuracy needs far fewer passes over ``W`` (k = 4 Krylov blocks beat 10 subspace iterations on every
weight we measured, see ``experiments/bench_adapters.py``). The products with ``W`` set the cost,
so the code keeps them fast:

- ``q = r + oversample`` rounded up to a multiple of :data:`COLUMN_BLOCK` (8): GEMM kernels work in
  column blocks, and on a 2-core CPU ``W (1024, 1024) @ (1024, 32)`` ran faster than ``@ (1024, 26)``.
  More columns never lower the expected accuracy.
- products with ``Wᵀ`` are computed as ``(Yᵀ W)ᵀ`` (:func:`rows_times`): multiplying by a transposed
  ``W`` ran ~1.3x slower, and a transposed copy costs more than the products it would speed up.
- blocks are orthonormalised by Cholesky-QR (:func:`orthonormal_rows`), the final basis by Householder QR.
- weights are copied a chunk at a time into one reused buffer (fresh memory costs page faults:
  ~50 ms per 128 MB on the 2-core machine), which also bounds the extra memory to :data:`CHUNK_BYTES`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

COLUMN_BLOCK = 8
PRODUCT_BLOCK = 1024
MIN_PIVOT_RATIO = 1e-3
MIN_SINGULAR_RATIO = 1e-5
CHUNK_BYTES = 128 * 2**20


def rows_times(yt: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``Yᵀ W`` for ``yt = Yᵀ (b, q, m)`` and ``w (b, m, n)`` -> ``(b, q, n)``.

    Computed in column blocks of ``w`` (:data:`PRODUCT_BLOCK`): on CPU one ``(32, 1024) @ (1024, 4096)``
    product ran ~1.3x slower than four ``@ (1024, 1024)`` ones. Never transposes ``w``.
    """
    n = w.shape[-1]
    if n <= PRODUCT_BLOCK:
        return torch.bmm(yt, w)
    return torch.cat([torch.bmm(yt, w[..., j : j + PRODUCT_BLOCK]) for j in range(0, n, PRODUCT_BLOCK)], dim=-1)


def orthonormal_rows(zt: torch.Tensor) -> torch.Tensor:
    """Rows spanning the row space of ``zt (b, q, n)``, orthonormal up to rounding -> ``(b, q, n)``.

    Cholesky-QR: ``Z Zᵀ = L Lᵀ`` (Gram in float32, factored in float64) and ``L⁻¹ Z``. Any invertible
    ``L`` keeps the span exactly, so the iterations only need the result well conditioned (its
    departure from orthonormal is about ``eps · cond(Z)²``); the final basis is made by Householder QR.
    A Gram that is not positive definite, or whose pivots differ by more than ``1 / MIN_PIVOT_RATIO``
    (``cond(Z)`` at least that large: rank-deficient or nearly so), falls back to Householder QR.
    About a quarter of the cost of ``torch.linalg.qr`` for these shapes on CPU.
    """
    chol, info = torch.linalg.cholesky_ex((zt @ zt.mT).double())
    pivots = chol.diagonal(dim1=-2, dim2=-1)  # min/max pivot >= 1/cond(Z)
    if bool((info != 0).any()) or bool((pivots.amin(-1) < MIN_PIVOT_RATIO * pivots.amax(-1)).any()):
        return torch.linalg.qr(zt.mT).Q.mT
    eye = torch.eye(zt.shape[-2], dtype=chol.dtype, device=chol.device).expand_as(chol)
    chol_inv = torch.linalg.solve_triangular(chol, eye, upper=False)  # L⁻¹ (b, q, q)
    return chol_inv.to(zt.dtype) @ zt


def small_svd(b: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``r`` SVD of the short wide ``b (c, k, n)`` (k ≤ n): ``U (c, k, r)``, ``S (c, r)``, ``Vh (c, r, n)``.

    From the eigenpairs of the ``k × k`` Gram ``B Bᵀ = U S² Uᵀ`` in float64, ``Vh = S⁻¹ Uᵀ B``: for the
    Krylov basis (k = 160, n = 1024) about 4x faster than ``torch.linalg.svd(b)`` on CPU. Where the r-th singular value
    is below ``MIN_SINGULAR_RATIO`` times the first (a weight of rank < r) it uses ``torch.linalg.svd``.
    """
    b64 = b.double()
    eigvals, eigvecs = torch.linalg.eigh(b64 @ b64.mT)  # ascending
    s = eigvals.flip(-1)[..., :rank].clamp_min(0).sqrt()
    if bool((s[..., -1] <= MIN_SINGULAR_RATIO * s[..., 0]).any()):
        u, s, vh = torch.linalg.svd(b, full_matrices=False)
        return u[..., :rank], s[..., :rank], vh[..., :rank, :]
    u = eigvecs.flip(-1)[..., :rank]
    vh = (u.mT @ b64) / s.unsqueeze(-1)
    return u.to(b.dtype), s.to(b.dtype), vh.to(b.dtype)


def randomized_svd(
    weights: torch.Tensor | Sequence[torch.Tensor],
    rank: int,
    n_iter: int = 10,
    oversample: int = 10,
    seed: int = 42,
    krylov: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Randomised rank-``r`` SVD of ``b`` weights ``(m, n)``: ``U (b, m, r)``, ``S (b, r)``, ``Vh (b, r, n)``.

    ``weights`` is a batch ``(b, m, n)`` or a sequence of ``(m, n)`` tensors (any float dtype; the
    work is float32). ``n_iter`` is k in the module docstring: subspace iterations
    (``krylov=False``) or Krylov blocks after the first (``krylov=True``). ``Ω`` for all ``b`` weights
    is drawn first, from a generator seeded with ``seed`` on the weights' device, so the factors do
    not depend on the chunking.
    """
    b = len(weights)
    m, n = weights[0].shape[-2:]
    device = weights[0].device
    q = min(-(-(rank + oversample) // COLUMN_BLOCK) * COLUMN_BLOCK, m, n)
    gen = torch.Generator(device=device).manual_seed(seed)
    omega_t = torch.randn(b, q, n, generator=gen, device=device)  # Ωᵀ for every weight
    per_chunk = max(1, CHUNK_BYTES // (4 * m * n))
    stacked = isinstance(weights, torch.Tensor) and weights.dtype == torch.float32
    buffer = None if stacked else torch.empty(min(per_chunk, b), m, n, device=device)
    us, ss, vhs = [], [], []
    for i in range(0, b, per_chunk):
        chunk = weights[i : i + per_chunk]
        if stacked:
            w = chunk.detach()  # (c, m, n)
        else:
            w = buffer[: len(chunk)]
            for j, x in enumerate(chunk):
                w[j].copy_(x.detach())
        yt = orthonormal_rows(torch.bmm(w, omega_t[i : i + per_chunk].mT).mT)  # Y_0ᵀ (c, q, m)
        blocks = [yt]
        for _ in range(n_iter):
            zt = orthonormal_rows(rows_times(yt, w))  # (c, q, n)
            yt = orthonormal_rows(torch.bmm(w, zt.mT).mT)  # Y_jᵀ (c, q, m)
            if krylov:
                blocks.append(yt)
        span = torch.cat(blocks, dim=1) if krylov else yt  # (c, q(k+1) or q, m)
        basis = torch.linalg.qr(span.mT).Q  # (c, m, ·), orthonormal columns
        u_small, s, vh = small_svd(rows_times(basis.mT.contiguous(), w), rank)  # Qᵀ W (q >= r columns)
        us.append(torch.bmm(basis, u_small))
        ss.append(s)
        vhs.append(vh)
    return torch.cat(us), torch.cat(ss), torch.cat(vhs)
