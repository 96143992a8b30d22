"""LoRA-SB's estimate of the first full fine-tuning update (official ``estimate_and_process_grads_torch_3``).

On the base model, before adapters: forward and backward on the first ``n`` training samples (each
batch cut to the samples still needed, its loss divided by that number), summing the gradient of each
target weight, ``G = Σ_b ∂(L_b / n_b)/∂W`` (float32, on the weight's device; shape ``(d_out, d_in)``,
transposed back for ``Conv1D``). Across processes the sums are all-reduced. Only the target weights
require gradients during the estimate; every ``requires_grad`` flag is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .layers import layer_shape

LossFn = Callable[[nn.Module, Any], torch.Tensor]


def effective_lr(rule: str, lr: float, warmup_ratio: float | None = None, total_steps: int | None = None) -> float:
    """``η_eff``: ``warmup`` → ``lr / (warmup_ratio · total_steps)`` (official); ``lr`` → ``lr``."""
    if rule == "lr":
        return float(lr)
    if rule == "warmup":
        if not warmup_ratio or not total_steps or warmup_ratio <= 0 or total_steps <= 0:
            raise ValueError(
                f"lorasb_lr_rule='warmup' needs warmup_ratio > 0 and total_steps > 0, got {warmup_ratio!r}, "
                f"{total_steps!r}; pass both, or use lorasb_lr_rule='lr'"
            )
        return float(lr) / (warmup_ratio * total_steps)
    raise ValueError(f"unknown lorasb_lr_rule {rule!r}; valid: warmup, lr")


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


def estimate_gradients(
    model: nn.Module,
    target_names: list[str],
    batches: Iterable[Any],
    n_samples: int,
    loss_fn: LossFn | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Summed gradients ``G (d_out, d_in)`` of the named target weights over the first ``n_samples``."""
    modules = dict(model.named_modules())
    targets = {n: modules[n] for n in target_names}
    flags = {p: p.requires_grad for p in model.parameters()}
    device = next(model.parameters()).device
    sums = {n: torch.zeros(layer_shape(m), dtype=torch.float32, device=m.weight.device) for n, m in targets.items()}
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
        for batch in batches:
            take = min(_batch_size(batch), n_samples - seen)
            if take <= 0:
                break
            loss = loss_fn(model, _slice(batch, take, device))
            (loss / take).backward()
            for n, m in targets.items():
                g = m.weight.grad
                if g is not None:
                    sums[n] += (g.t() if not isinstance(m, nn.Linear) else g).float()
                m.weight.grad = None
            seen += take
            bar.update(take)
        bar.close()
    finally:
        for p, f in flags.items():
            p.requires_grad_(f)
            p.grad = None
        model.train(was_training)
    if seen == 0:
        raise ValueError("LoRA-SB: the gradient batches were empty; pass the training batches")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for g in sums.values():
            torch.distributed.all_reduce(g, op=torch.distributed.ReduceOp.SUM)
    return sums
