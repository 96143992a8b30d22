"""LoRA-SB's data-driven init, a step of its own: estimate → η_eff → factors (official ``estimate_and_process_grads_torch``).

1. :func:`estimate_gradients`: on the base model, before adapters, in train mode (dropout on), forward and
   backward on the first ``n`` training samples in batches of ``eg_bs``; each batch's (mean) loss is divided by
   the number of samples in the batch, as the official code does, and the gradients of every target weight are
   summed: ``G = Σ_b ∂(L_b / n_b)/∂W``, shape ``(d_out, d_in)`` (transposed back for ``Conv1D``).
2. :func:`effective_lr`: ``η_eff = lr / (warmup_ratio · total)``, official ``total = ⌈N_train / eg_bs⌉ · epochs``.
3. ``inject_adapters(model, config, init=LoraSBInit(G, η_eff))`` sets ``ΔW = −η_eff · sign(G) ≈ B R A``
   (:func:`loraxs.init.init_lorasb`). :func:`lorasb_init` runs steps 1 and 3's inputs in one call.

The estimate means the same on 1 and on P processes: every process walks the same sequence of batches and
computes batch ``k`` only when ``k mod P`` is its rank; the sums are float64 on the CPU (as the official code
keeps them on the CPU), so their order does not matter, and are all-reduced. With ``seed`` set, batch ``k``'s
dropout is drawn from ``seed + k`` wherever it runs. Only the target weights require gradients during the
estimate; every ``requires_grad`` flag is restored afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .config import AdapterConfig
from .layers import layer_shape

LossFn = Callable[[nn.Module, Any], torch.Tensor]


@dataclass
class LoraSBInit:
    """What LoRA-SB's factors are made from: summed gradients ``G`` per target name and ``η_eff``."""

    gradients: dict[str, torch.Tensor]
    eta: float


def effective_lr(
    rule: str,
    lr: float,
    warmup_ratio: float | None = None,
    *,
    n_train: int | None = None,
    batch_size: int | None = None,
    epochs: int | None = None,
    optimizer_steps: int | None = None,
) -> float:
    """``η_eff`` by ``rule`` (``AdapterConfig.lorasb_lr_rule``).

    - ``warmup`` (official): ``lr / (warmup_ratio · ⌈n_train / batch_size⌉ · epochs)``, ``batch_size`` = eg_bs;
    - ``warmup_optimizer_steps``: ``lr / (warmup_ratio · optimizer_steps)``;
    - ``lr``: ``lr``.
    """
    if rule == "lr":
        return float(lr)
    if rule not in ("warmup", "warmup_optimizer_steps"):
        raise ValueError(f"unknown lorasb_lr_rule {rule!r}; valid: warmup, warmup_optimizer_steps, lr")
    if rule == "warmup":
        if not (n_train and batch_size and epochs):
            raise ValueError(
                f"lorasb_lr_rule='warmup' needs n_train, batch_size (eg_bs) and epochs, got {n_train!r}, "
                f"{batch_size!r}, {epochs!r}"
            )
        total = math.ceil(n_train / batch_size) * epochs
    else:
        total = optimizer_steps or 0
    if not warmup_ratio or warmup_ratio <= 0 or total <= 0:
        raise ValueError(
            f"lorasb_lr_rule={rule!r} needs warmup_ratio > 0 and a positive step count, got {warmup_ratio!r}, "
            f"{total!r}; or use lorasb_lr_rule='lr'"
        )
    return float(lr) / (warmup_ratio * total)


def _batch_size(batch: Any) -> int:
    if isinstance(batch, Mapping):
        for v in batch.values():
            if torch.is_tensor(v) and v.dim() > 0:
                return int(v.shape[0])
    raise ValueError("LoRA-SB: a batch must be a dict holding at least one tensor with a batch dimension")


def _slice(batch: Mapping, n: int, device: torch.device) -> dict:
    return {k: (v[:n].to(device) if torch.is_tensor(v) and v.dim() > 0 else v) for k, v in batch.items()}


def _default_loss(model: nn.Module, batch: Mapping) -> torch.Tensor:
    out = model(**batch)
    loss = out["loss"] if isinstance(out, Mapping) else getattr(out, "loss", None)
    if loss is None:
        raise ValueError("LoRA-SB: the model returned no loss; include labels in the batches or pass loss_fn")
    return loss


def _process_group() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def estimate_gradients(
    model: nn.Module,
    target_names: list[str],
    batches: Iterable[Any],
    n_samples: int | None = None,
    loss_fn: LossFn | None = None,
    progress: bool = False,
    seed: int | None = None,
) -> dict[str, torch.Tensor]:
    """Summed gradients ``G (d_out, d_in)`` (float64, CPU) of the named target weights over the first
    ``n_samples`` samples of ``batches`` (all of them when ``None``).

    Every process must pass the same ``batches``; batch ``k`` is computed by process ``k mod P`` and the sums are
    all-reduced, so the result does not depend on the number of processes. ``seed``: batch ``k`` runs under
    ``torch.manual_seed(seed + k)`` (its dropout masks), restoring the RNG state afterwards.
    """
    modules = dict(model.named_modules())
    targets = {n: modules[n] for n in target_names}
    flags = {p: p.requires_grad for p in model.parameters()}
    device = next(model.parameters()).device
    rank, world = _process_group()
    sums = {n: torch.zeros(layer_shape(m), dtype=torch.float64) for n, m in targets.items()}
    loss_fn = loss_fn or _default_loss
    was_training = model.training
    seen = 0
    try:
        for p in model.parameters():
            p.requires_grad_(False)
            p.grad = None
        for m in targets.values():
            m.weight.requires_grad_(True)
        model.train()
        bar = tqdm(total=n_samples, desc="LoRA-SB gradient estimate", disable=not progress)
        for k, batch in enumerate(batches):
            take = _batch_size(batch) if n_samples is None else min(_batch_size(batch), n_samples - seen)
            if take <= 0:
                break
            seen += take
            bar.update(take)
            if k % world != rank:
                continue
            devices = [device] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices, enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed + k)
                loss = loss_fn(model, _slice(batch, take, device))
            (loss / take).backward()
            for n, m in targets.items():
                g = m.weight.grad
                if g is not None:
                    sums[n] += (g.t() if not isinstance(m, nn.Linear) else g).to("cpu", torch.float64)
                m.weight.grad = None
        bar.close()
    finally:
        for p, f in flags.items():
            p.requires_grad_(f)
            p.grad = None
        model.train(was_training)
    if seen == 0:
        raise ValueError("LoRA-SB: the gradient batches were empty; pass the training batches")
    if world > 1:
        on_device = torch.distributed.get_backend() == "nccl"
        for g in sums.values():
            t = g.to(device) if on_device else g
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
            if on_device:
                g.copy_(t)
    return sums


def lorasb_init(
    model: nn.Module,
    config: AdapterConfig,
    batches: Iterable[Any],
    eta: float,
    loss_fn: LossFn | None = None,
    progress: bool = False,
    seed: int | None = None,
) -> LoraSBInit:
    """Step 1 for ``inject_adapters(model, config, init=...)``: the estimate over ``config.lorasb_n_samples``
    samples of ``batches`` on ``model``'s targets, with ``η_eff = eta`` (see :func:`effective_lr`)."""
    from .inject import find_targets

    names = find_targets(model, config)
    grads = estimate_gradients(model, names, batches, config.lorasb_n_samples, loss_fn, progress, seed)
    return LoraSBInit(gradients=grads, eta=float(eta))
