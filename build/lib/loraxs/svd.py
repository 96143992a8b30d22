"""Truncated SVD backends and the sign rule that makes their factors reproducible.

For a weight ``W`` of shape ``(d_out, d_in)`` every backend returns ``U (d_out, r)``, ``S (r,)``,
``Vh (r, d_in)`` with ``W ≈ U diag(S) Vh``, computed in float32 on ``W``'s device:

- ``torch``: exact ``torch.linalg.svd`` (batched over weights of one shape).
- ``torch_lowrank``: randomised ``torch.svd_lowrank`` with ``q = r + oversample`` columns and
  ``n_iter`` power iterations, seeded (batched over weights of one shape). Official LoRA-SB call.
- ``krylov`` (default): randomised block Krylov with ``krylov_depth`` blocks after the first
  (Musco & Musco 2015), batched and tuned for speed (:mod:`loraxs.rsvd`). More accurate than the
  official path with fewer passes over ``W``.
- ``randomized``: the official algorithm, randomised subspace iteration with ``n_iter`` iterations
  (Halko, Martinsson & Tropp 2011, Alg. 4.4, as scikit-learn and ``torch.svd_lowrank`` run it),
  with the same tuned implementation (:mod:`loraxs.rsvd`).
- ``sklearn``: ``TruncatedSVD(n_components=r, n_iter, random_state=seed)`` fitted on ``Wᵀ``, the
  official LoRA-XS path (CPU, one weight at a time).

Singular vectors are unique only up to the sign of each pair ``(u_i, v_i)``. :func:`fix_signs` flips
each pair so that the entry of ``u_i`` with the largest magnitude is positive (scikit-learn's
``svd_flip`` rule), so recomputing on another machine gives the same factors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .config import SVD_BACKENDS
from .rsvd import randomized_svd


def fix_signs(u: torch.Tensor, vh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each singular pair so the largest-magnitude entry of each column of ``u`` is positive.

    Shapes: ``u (..., m, r)``, ``vh (..., r, n)``; returns tensors of the same shapes.
    """
    idx = u.abs().argmax(dim=-2, keepdim=True)  # (..., 1, r)
    signs = torch.sign(torch.gather(u, -2, idx))  # (..., 1, r)
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return u * signs, vh * signs.transpose(-1, -2)


def _seeded(device: torch.device, seed: int):
    devices = [device] if device.type == "cuda" else []
    ctx = torch.random.fork_rng(devices=devices)
    ctx.__enter__()
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)
    return ctx


def truncated_svd(
    weights: torch.Tensor | Sequence[torch.Tensor],
    rank: int,
    backend: str = "torch",
    n_iter: int = 10,
    oversample: int = 10,
    seed: int = 42,
    krylov_depth: int = 4,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rank-``r`` SVD of one weight ``(d_out, d_in)`` or of a batch of same-shape weights.

    ``weights``: a 2-D tensor, a 3-D batch ``(b, d_out, d_in)`` or a sequence of same-shape 2-D
    tensors (``krylov`` and ``randomized`` copy them a chunk at a time, bounding the extra memory).
    Returns ``U (b, d_out, r)``, ``S (b, r)``, ``Vh (b, r, d_in)`` in float32 on the weights'
    device (the batch axis is dropped for a single 2-D input), signs fixed by :func:`fix_signs`.
    """
    if backend not in SVD_BACKENDS:
        raise ValueError(f"unknown svd backend {backend!r}; valid: {', '.join(SVD_BACKENDS)}")
    single = isinstance(weights, torch.Tensor) and weights.dim() == 2
    if single:
        batch: torch.Tensor | list[torch.Tensor] = weights.unsqueeze(0)
    elif isinstance(weights, torch.Tensor):
        batch = weights
    else:
        batch = list(weights)
        if len({tuple(x.shape) for x in batch}) != 1:
            raise ValueError(f"truncated_svd needs weights of one shape, got {sorted({tuple(x.shape) for x in batch})}")
    m, n = batch[0].shape[-2:]
    if not 1 <= rank <= min(m, n):
        raise ValueError(f"rank {rank} out of range for a weight of shape ({m}, {n}); valid: 1..{min(m, n)}")

    if backend in ("krylov", "randomized"):
        krylov = backend == "krylov"
        u, s, vh = randomized_svd(batch, rank, krylov_depth if krylov else n_iter, oversample, seed, krylov=krylov)
        u, vh = fix_signs(u, vh)
        return (u[0], s[0], vh[0]) if single else (u, s, vh)
    w = (batch if isinstance(batch, torch.Tensor) else torch.stack(batch)).detach().float()
    if backend == "torch":
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        u, s, vh = u[..., :rank], s[..., :rank], vh[..., :rank, :]
    elif backend == "torch_lowrank":
        q = min(rank + oversample, m, n)
        ctx = _seeded(w.device, seed)
        try:
            u, s, v = torch.svd_lowrank(w, q=q, niter=n_iter)
        finally:
            ctx.__exit__(None, None, None)
        u, s, vh = u[..., :rank], s[..., :rank], v[..., :rank].transpose(-1, -2)
    else:
        u, s, vh = _sklearn_svd(w, rank, n_iter, seed)

    u, vh = fix_signs(u.contiguous(), vh.contiguous())
    if single:
        return u[0], s[0], vh[0]
    return u, s, vh


def _sklearn_svd(w: torch.Tensor, rank: int, n_iter: int, seed: int):
    """Official LoRA-XS: ``TruncatedSVD`` fitted on ``Wᵀ`` (d_in, d_out).

    ``components_`` (r, d_out) are the right singular vectors of ``Wᵀ`` = left ones of ``W``;
    ``transform(Wᵀ) = Wᵀ Uᵀ... = V Σ`` (d_in, r).
    """
    from sklearn.decomposition import TruncatedSVD

    us, ss, vhs = [], [], []
    for wi in w:
        x = wi.T.cpu().numpy()
        svd = TruncatedSVD(n_components=rank, n_iter=n_iter, random_state=seed)
        v_sigma = svd.fit_transform(x)  # (d_in, r) = V Σ
        s = torch.from_numpy(svd.singular_values_.copy()).float()
        u = torch.from_numpy(svd.components_.T.copy()).float()  # (d_out, r)
        vh = (torch.from_numpy(v_sigma).float() / s).T  # (r, d_in)
        us.append(u)
        ss.append(s)
        vhs.append(vh)
    dev = w.device
    return torch.stack(us).to(dev), torch.stack(ss).to(dev), torch.stack(vhs).to(dev)
