"""Resumable checkpoints: ``checkpoints/last.pt``, one ``torch.save`` file written atomically, read with
``weights_only=True``; the ``keep - 1`` before it stay as ``checkpoints/step-<n>.pt`` (hard links, no copy).

A checkpoint holds the adapter tensors (trainable ones and the frozen A, B), the head, the optimizer and
scheduler states, the epoch and step counters, the batches consumed in the current epoch, the torch random
states, the evaluation history and the elapsed training time. Data order is seeded from (seed, epoch), so a
resume replays the same order, skips the consumed batches and restores the dropout random state: it repeats
the uninterrupted run exactly on CPU, from an epoch end or from the middle of an epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_write
from .errors import TrainingError


def state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters plus the frozen adapter factors (``lora_A``, ``lora_B``)."""
    return {
        n: p.detach().cpu().clone()
        for n, p in model.named_parameters()
        if p.requires_grad or n.endswith(("lora_A", "lora_B"))
    }


def rng_state() -> dict[str, Any]:
    """The torch random states (CPU, and every CUDA device when there is one)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(
    path: Path,
    model: nn.Module,
    optimizer: Any,
    scheduler: Any,
    progress: dict[str, Any],
    keep: int = 1,
    previous_step: int | None = None,
) -> None:
    """Write the checkpoint to ``path`` atomically; with ``keep > 1`` the previous ``path`` (saved at optimizer
    step ``previous_step``) stays as ``step-<n>.pt`` beside it, and only the ``keep - 1`` newest of those are kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if keep > 1 and previous_step is not None and path.is_file():
        _keep_previous(path, keep, previous_step)
    payload = {
        "model": state_tensors(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "progress": progress,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _keep_previous(path: Path, keep: int, step: int) -> None:
    import os
    import shutil

    older = path.with_name(f"step-{step:08d}.pt")
    if not older.exists():
        try:
            os.link(path, older)
        except OSError:  # no hard links on this filesystem
            shutil.copy2(path, older)
    for stale in sorted(path.parent.glob("step-*.pt"))[: -(keep - 1)]:
        stale.unlink()


def load(path: Path, model: nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Restore the states saved by :func:`save`; returns the ``progress`` dict."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TrainingError(f"checkpoint {path} is unreadable ({type(e).__name__}); it may be truncated") from None
    keys = ("model", "optimizer", "scheduler", "progress")
    if not isinstance(payload, dict) or not all(k in payload for k in keys):
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise TrainingError(
            f"checkpoint {path} is not a checkpoint of this library (expected the keys {', '.join(keys)}; "
            f"found {found})"
        )
    params = dict(model.named_parameters())
    missing = sorted(set(payload["model"]) - set(params))
    if missing:
        raise TrainingError(
            f"checkpoint {path} holds tensors {missing[:3]} this model lacks; resume with the same config"
        )
    with torch.no_grad():
        for n, t in payload["model"].items():
            if params[n].shape != t.shape:
                raise TrainingError(
                    f"checkpoint {path}: {n} has shape {tuple(t.shape)}, the model {tuple(params[n].shape)}"
                )
            params[n].copy_(t.to(params[n]))
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    return payload["progress"]
