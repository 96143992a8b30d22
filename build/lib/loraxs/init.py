"""Initialisations of the adapter factors, exactly as METHODS.md §1.

- LoRA: ``A ~ KaimingUniform(a=√5)`` on ``(r, d_in)`` (bound ``1/√d_in``), ``B = 0``.
- LoRA-XS (SVD): ``W ≈ U_r Σ_r V_rᵀ``; ``A = Σ_r V_rᵀ``, ``B = U_r``; ``R ~ N(0, σ²)``, σ = 1e-5.
- LoRA-XS (random): as the official code, Kaiming-uniform (a = √5) on the factors in their SVD layout,
  ``Aᵀ (d_in, r)`` (bound ``1/√r``) and ``Bᵀ (r, d_out)`` (bound ``1/√d_out``), from a generator seeded
  per module with ``seed`` and the module name, so the factors can be rebuilt from the seed.
- LoRA-SB: ``ΔW = −η_eff · sign(G)``; SVD of ``ΔWᵀ ≈ U S Vᵀ``; ``B = V``, ``R = diag(S)``, ``A = Uᵀ``.

SVDs run on the weight's device in float32 and are batched over weights of one shape; the factors are
stored in the layer's dtype.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Mapping

import torch
from tqdm.auto import tqdm

from .config import AdapterConfig
from .layers import AdapterLayer, LoraLayer, XSLayer
from .svd import truncated_svd


@torch.no_grad()
def init_lora(layers: Mapping[str, LoraLayer]) -> None:
    """``A`` Kaiming-uniform (a = √5) on ``(r, d_in)``, ``B = 0`` (uses the global RNG)."""
    for layer in layers.values():
        torch.nn.init.kaiming_uniform_(layer.lora_A, a=math.sqrt(5))
        layer.lora_B.zero_()


@torch.no_grad()
def init_r_normal(layers: Mapping[str, XSLayer], std: float) -> None:
    """``R ~ N(0, std²)`` (uses the global RNG, i.e. the run's seed)."""
    for layer in layers.values():
        r = torch.randn(layer.rank, layer.rank) * std
        layer.lora_R.copy_(r.to(layer.lora_R))


def _groups(layers: Mapping[str, AdapterLayer]) -> dict[tuple, list[str]]:
    groups: dict[tuple, list[str]] = defaultdict(list)
    for name, layer in layers.items():
        w = layer.base_layer.weight
        groups[(layer.d_out, layer.d_in, w.device, w.dtype)].append(name)
    return groups


@torch.no_grad()
def init_xs_svd(layers: Mapping[str, XSLayer], cfg: AdapterConfig, progress: bool = False) -> None:
    """LoRA-XS: ``A = Σ_r V_rᵀ (r, d_in)``, ``B = U_r (d_out, r)`` from the truncated SVD of each ``W``."""
    groups = _groups(layers)
    bar = tqdm(total=len(layers), desc="LoRA-XS SVD", disable=not progress)
    for names in groups.values():
        weights = [layers[n].weight for n in names]
        u, s, vh = truncated_svd(
            weights, cfg.rank, cfg.svd_backend, cfg.svd_n_iter, cfg.svd_oversample, cfg.seed, cfg.svd_krylov_depth
        )
        for i, n in enumerate(names):
            layer = layers[n]
            layer.lora_A.copy_((s[i, :, None] * vh[i]).to(layer.lora_A))
            layer.lora_B.copy_(u[i].to(layer.lora_B))
        bar.update(len(names))
    bar.close()


def module_seed(seed: int, name: str) -> int:
    """A per-module seed that does not depend on the order modules are visited in."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


@torch.no_grad()
def init_xs_random(layers: Mapping[str, XSLayer], cfg: AdapterConfig) -> None:
    """LoRA-XS random ablation: Kaiming-uniform ``Aᵀ (d_in, r)`` and ``Bᵀ (r, d_out)`` (official layout)."""
    for name, layer in layers.items():
        g = torch.Generator().manual_seed(module_seed(cfg.seed, name))
        a_t = torch.empty(layer.d_in, layer.rank)
        b_t = torch.empty(layer.rank, layer.d_out)
        torch.nn.init.kaiming_uniform_(a_t, a=math.sqrt(5), generator=g)
        torch.nn.init.kaiming_uniform_(b_t, a=math.sqrt(5), generator=g)
        layer.lora_A.copy_(a_t.t().to(layer.lora_A))
        layer.lora_B.copy_(b_t.t().to(layer.lora_B))


@torch.no_grad()
def init_lorasb(
    layers: Mapping[str, XSLayer],
    gradients: Mapping[str, torch.Tensor],
    effective_lr: float,
    cfg: AdapterConfig,
) -> None:
    """LoRA-SB: from the summed gradients ``G (d_out, d_in)`` of each target weight.

    ``ΔW = −η_eff · sign(G)``; truncated SVD ``ΔWᵀ ≈ U S Vᵀ`` (U ``(d_in, r)``, V ``(d_out, r)``), so
    ``ΔW ≈ V S Uᵀ``: ``B = V``, ``R = diag(S)``, ``A = Uᵀ``. The base weights are not changed.
    """
    missing = sorted(set(layers) - set(gradients))
    if missing:
        raise ValueError(f"LoRA-SB: no gradient for target modules {missing[:5]} (got {len(gradients)} gradients)")
    for names in _groups(layers).values():
        dw_t = torch.stack([(-effective_lr * torch.sign(gradients[n]).float()).t() for n in names])
        u, s, vh = truncated_svd(
            dw_t.to(layers[names[0]].lora_R.device),
            cfg.rank,
            cfg.svd_backend,
            cfg.svd_n_iter,
            cfg.svd_oversample,
            cfg.seed,
            cfg.svd_krylov_depth,
        )  # ΔWᵀ ≈ u diag(s) vh,  u (d_in, r), vh (r, d_out)
        for i, n in enumerate(names):
            layer = layers[n]
            layer.lora_B.copy_(vh[i].t().to(layer.lora_B))
            layer.lora_R.copy_(torch.diag(s[i]).to(layer.lora_R))
            layer.lora_A.copy_(u[i].t().to(layer.lora_A))
