"""Resuming means the same run: ``resume=<run folder>`` continues with the run's saved ``config.yaml``.

Overrides given with ``resume=`` are refused, except the keys of :data:`MAY_CHANGE` (the learning rates, to go on
after a divergence, and settings that do not change what is computed); a changed value really applies from the
next optimizer step (:func:`apply_lr_change`) and is recorded in the run's ``metrics.json`` (``resumes``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ConfigError

# keys that may differ on resume; the learning rates re-base the schedule (see apply_lr_change)
MAY_CHANGE = (
    "task.lr",
    "task.head_lr",
    "trainer.progress",
    "trainer.threads",
    "trainer.num_workers",
    "trainer.eval_batch_size",
    "trainer.checkpoint_every",
    "trainer.checkpoint_steps",
    "trainer.keep_checkpoints",
    "trainer.interrupt_at_step",
)


def saved_config(folder: str | Path, overrides: list[str]) -> tuple[Any, dict[str, list[Any]]]:
    """The run's saved config with ``resume=<folder>`` and the allowed ``overrides`` (``key=value``, Hydra's
    grammar) applied; returns ``(config, {key: [saved, new]})`` for the values that changed. Raises
    :class:`ConfigError` naming the first override that may not change, or a folder that holds no run."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from omegaconf import OmegaConf

    folder = Path(folder)
    path = folder / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"resume={folder} holds no config.yaml; give a run folder (outputs/runs/<run>)")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:
        raise ConfigError(f"resume={folder}: config.yaml is unreadable ({str(e).splitlines()[0]})") from None
    changes: dict[str, list[Any]] = {}
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.get_key_element().lstrip("+~")
        if key == "resume":
            continue
        if o.type != OverrideType.CHANGE or o.is_sweep_override() or key not in MAY_CHANGE:
            raise ConfigError(
                f"{o.input_line} cannot be given with resume= (a resumed run continues its saved config, "
                f"{path}); may change: {', '.join(MAY_CHANGE)}"
            )
        old, new = OmegaConf.select(cfg, key), o.value()
        OmegaConf.update(cfg, key, new, force_add=True)
        if old != new:
            changes[key] = [old, new]
    cfg.resume = str(folder)
    return cfg, changes


def status(folder: str | Path) -> str | None:
    """``metrics.json``'s status of a run folder (``finished``, ``failed``, ...), ``None`` if unreadable."""
    try:
        return json.loads((Path(folder) / "metrics.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def apply_lr_change(optimizer: Any, scheduler: Any, wanted: list[float]) -> list[tuple[float, float]]:
    """After a checkpoint's optimizer and scheduler states were loaded (which bring back the saved learning
    rates), re-base each param group on ``wanted[i]`` (its lr from the resumed config): the schedule's factor at
    the current step is kept, ``lr_i = wanted_i · (lr_i / base_i)``. Returns ``[(saved base, new base)]`` of the
    groups that changed."""
    changed = []
    for i, (group, new_base) in enumerate(zip(optimizer.param_groups, wanted)):
        old_base = group.get("initial_lr", group["lr"])
        if abs(new_base - old_base) <= 1e-12 * max(abs(old_base), 1e-30):
            continue
        factor = group["lr"] / old_base if old_base else 0.0
        group["initial_lr"] = new_base
        group["lr"] = new_base * factor
        if hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs[i] = new_base
        changed.append((old_base, new_base))
    if changed and hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
    return changed
