"""Resumable checkpoints: ``checkpoints/last.pt``, one ``torch.save`` file written atomically, read with
``weights_only=True``; the ``keep - 1`` before it stay as ``checkpoints/step-<n>.pt`` (hard links, no copy).

A checkpoint holds the adapter tensors (trainable ones and the frozen A, B), the head, the optimizer and
scheduler states, the epoch and step counters, the batches consumed in the current epoch, the torch random
states, the evaluation history and the elapsed training time. Data order is seeded from (seed, epoch), so a
resume replays the same order, skips the consumed batches and restores the dropout random state: it repeats
the uninterrupted run exactly on CPU, from an epoch end or from the middle of an epoch.

Every process calls :func:`save` and :func:`load`; one writes. The states are full (unsharded) tensors in every
setting: under FSDP each sharded parameter is gathered (``DTensor.full_tensor``) and the optimizer state comes
from ``torch.distributed.checkpoint.state_dict.get_optimizer_state_dict(full_state_dict=True, cpu_offload=True)``,
the helper Accelerate's own FSDP2 ``save_fsdp_optimizer`` calls; on load each rank takes its shard back
(``distribute_tensor``, ``set_optimizer_state_dict``). The optimizer state is keyed by parameter name, so the
tensors of a checkpoint written by 8 FSDP processes load into one unsharded model as well (a run itself resumes
with the process count that wrote it: the loop checks).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_write
from ..sharding import is_shard
from .errors import TrainingError


def _saved(name: str, p: torch.Tensor) -> bool:
    """What a checkpoint holds: the trainable parameters and the frozen adapter factors (``lora_A``, ``lora_B``)."""
    return p.requires_grad or name.endswith(("lora_A", "lora_B"))


def state_tensors(model: nn.Module, keep: bool = True) -> dict[str, torch.Tensor]:
    """Trainable parameters plus the frozen adapter factors, full and on the CPU. A sharded (FSDP) parameter is
    gathered, a collective that every process joins; ``keep=False`` (the processes that do not write) gathers and
    drops."""
    out = {}
    for n, p in model.named_parameters():
        if _saved(n, p):
            t = p.detach().full_tensor() if is_shard(p) else p.detach()
            if keep:
                out[n] = t.cpu().clone()
    return out


def optimizer_state(model: nn.Module, optimizer: Any) -> dict[str, Any]:
    """The optimizer's full state keyed by parameter name (gathered under FSDP; on the main process only when
    several processes run, empty elsewhere)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, _torch_optimizer(optimizer), options=options)


def _torch_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside Accelerate's wrapper (its param groups hold the model's parameters)."""
    return getattr(optimizer, "optimizer", optimizer)


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
    write: bool = True,
) -> None:
    """Write the checkpoint to ``path`` atomically; with ``keep > 1`` the previous ``path`` (saved at optimizer
    step ``previous_step``) stays as ``step-<n>.pt`` beside it, and only the ``keep - 1`` newest of those are kept.
    Every process calls it (the states are gathered); the one with ``write=True`` writes."""
    tensors = state_tensors(model, keep=write)
    optim = optimizer_state(model, optimizer)
    if not write:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if keep > 1 and previous_step is not None and path.is_file():
        _keep_previous(path, keep, previous_step)
    payload = {"model": tensors, "optimizer": optim, "scheduler": scheduler.state_dict(), "progress": progress}
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
    """Restore the states saved by :func:`save` (every process reads the file, memory-mapped, and takes its own
    shard of each sharded parameter); returns the ``progress`` dict."""
    try:
        mmap = zipfile.is_zipfile(path)  # torch.save's format (anything else fails below with its own reason)
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
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
            p = params[n]
            if is_shard(p):
                from torch.distributed.tensor import distribute_tensor

                local = distribute_tensor(t.to(p.device, p.dtype), p.device_mesh, p.placements).to_local()
                p.to_local().copy_(local)
            else:
                p.copy_(t.to(p))
    _load_optimizer(model, optimizer, payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    return payload["progress"]


def _load_optimizer(model: nn.Module, optimizer: Any, state: dict[str, Any]) -> None:
    """Keyed by parameter name (:func:`optimizer_state`), or by position (checkpoints of earlier versions)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if all(isinstance(i, int) for g in state.get("param_groups", []) for i in g["params"]):
        _torch_optimizer(optimizer).load_state_dict(state)
        return
    options = StateDictOptions(full_state_dict=True)
    set_optimizer_state_dict(model, _torch_optimizer(optimizer), state, options=options)
