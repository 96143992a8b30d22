"""Resumable checkpoints: one ``torch.save`` file written atomically, read with ``weights_only=True``.

It holds the adapter tensors (trainable ones and the frozen A, B), the head, the optimizer and scheduler
states, the epoch and step counters, the evaluation history and the elapsed training time. Data order and
dropout are re-seeded from (seed, epoch), so continuing after the last finished epoch repeats the
uninterrupted run exactly on CPU.
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


def save(path: Path, model: nn.Module, optimizer: Any, scheduler: Any, progress: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": state_tensors(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "progress": progress,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


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
