"""What saving and loading an adapter costs on a 7B model's target weights, with the base-weight fingerprint
hashed on every call (the old behaviour) and once per model (now).

A compact LoRA-XS adapter records a SHA-256 of the base weights it was trained on. The weights are the
Llama-2-7B shapes (32 layers × q, k, v, o 4096 × 4096, gate and up 11008 × 4096, down 4096 × 11008: 224
targets, 6.5 B parameters) in bfloat16. To fit a laptop they are views into one shared random buffer, so the
hash reads the same number of bytes as on the real model while only one matrix sits in memory. The adapter is
LoRA-XS r = 16 injected without init and saved with A and B (compact=False), so that loading does not
recompute the SVD: the fingerprint is recorded and checked either way, and the SVD is not what is measured.

Usage::

    python experiments/bench_fingerprint.py [--layers 32] [--rank 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import loraxs.io as io
from loraxs import AdapterConfig, inject_adapters, load_adapter, save_adapter

SHAPES = {  # name: (d_out, d_in), Llama-2-7B
    "q_proj": (4096, 4096),
    "k_proj": (4096, 4096),
    "v_proj": (4096, 4096),
    "o_proj": (4096, 4096),
    "gate_proj": (11008, 4096),
    "up_proj": (11008, 4096),
    "down_proj": (4096, 11008),
}


def shaped_model(n_layers: int, buffer: torch.Tensor) -> nn.Module:
    """``n_layers`` blocks of the seven target linears, every weight a view into ``buffer``."""
    blocks = nn.ModuleList()
    for _ in range(n_layers):
        block = nn.Module()
        for name, (d_out, d_in) in SHAPES.items():
            with torch.device("meta"):
                lin = nn.Linear(d_in, d_out, bias=False)
            lin.weight = nn.Parameter(buffer[: d_out * d_in].view(d_out, d_in), requires_grad=False)
            setattr(block, name, lin)
        blocks.append(block)
    model = nn.Module()
    model.layers = blocks
    return model


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def forget(model: nn.Module) -> None:
    """Drop the cached fingerprint: every call hashes again, as before the cache."""
    if hasattr(model, io.FINGERPRINT_ATTR):
        object.__delattr__(model, io.FINGERPRINT_ATTR)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--rank", type=int, default=16)
    args = ap.parse_args()
    torch.manual_seed(0)
    buffer = torch.randn(11008 * 4096, dtype=torch.bfloat16)
    cfg = AdapterConfig(method="loraxs", rank=args.rank, target_modules=list(SHAPES), modules_to_save=[])
    model = shaped_model(args.layers, buffer)
    inject_adapters(model, cfg, init=False)
    n = sum(p.numel() for n_, p in model.named_parameters() if n_.endswith("weight") and "lora" not in n_)
    print(f"{args.layers} layers, {args.layers * len(SHAPES)} targets, {n / 1e9:.2f} B bf16 base parameters")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        before_save = [timed(lambda: (forget(model), save_adapter(model, out / "a", compact=False))) for _ in range(2)]
        before_load = timed(lambda: (forget(model), load_adapter(model, out / "a")))
        forget(model)
        first_save = timed(lambda: save_adapter(model, out / "a", compact=False))  # hashes once
        after_save = [timed(lambda: save_adapter(model, out / "a", compact=False)) for _ in range(2)]
        after_load = timed(lambda: load_adapter(model, out / "a"))
    print(f"{'':34s}{'before':>10s}{'after':>10s}")
    print(f"{'save adapter_best (each epoch)':34s}{before_save[1]:>9.2f}s{after_save[0]:>9.2f}s")
    print(f"{'save the final adapter':34s}{before_save[1]:>9.2f}s{after_save[1]:>9.2f}s")
    print(f"{'reload it into the run model':34s}{before_load:>9.2f}s{after_load:>9.2f}s")
    print(f"first save of a run (hashes once): {first_save:.2f} s; loading onto a fresh model hashes once too")
    per_run_before = 2 * before_save[1] + before_load
    per_run_after = first_save + after_save[0] + after_load
    print(
        f"one best-epoch save, one final save, one reload: {per_run_before:.1f} s before, {per_run_after:.1f} s after"
    )


if __name__ == "__main__":
    main()
