"""The run folder: one per run, unique even for runs started in the same second, the same on every process.

Layout::

    <paths.output_dir>/runs/<run_name>_<YYYYmmdd-HHMMSS>_<6 hex>/
        config.yaml          resolved config
        train.log            the log (main process)
        metrics.json         trainable counts, every evaluation, best values, wall time (rewritten atomically)
        adapter/             final adapter (library format), adapter_best/ the best epoch's
        checkpoints/last.pt  resumable state (atomic)
        wandb/               W&B files (offline mode)
"""

from __future__ import annotations

import logging
import secrets
import sys
import time
from pathlib import Path
from typing import Any

LOG = logging.getLogger("loraxs")


def create(base: Path, name: str) -> Path:
    """Create ``base/runs/<name>_<time>_<id>`` with ``mkdir(exist_ok=False)``, retrying on a collision."""
    runs = base / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        path = runs / f"{name}_{stamp}_{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a unique run folder under {runs}")


def shared(accelerator: Any, base: Path, name: str, resume: str | None) -> Path:
    """The run folder, created by the main process and broadcast to the others."""
    from accelerate.utils import broadcast_object_list

    if resume is not None:
        return Path(resume).resolve()
    holder = [str(create(base, name)) if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        broadcast_object_list(holder, from_process=0)
    return Path(holder[0])


def setup_logging(run_dir: Path, main_process: bool) -> None:
    """Log to ``run_dir/train.log`` and stderr on the main process; warnings only elsewhere."""
    LOG.handlers.clear()
    LOG.propagate = False
    LOG.setLevel(logging.INFO if main_process else logging.WARNING)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(fmt)
    LOG.addHandler(stream)
    if main_process:
        fh = logging.FileHandler(run_dir / "train.log")
        fh.setFormatter(fmt)
        LOG.addHandler(fh)


def close_logging() -> None:
    for h in list(LOG.handlers):
        h.close()
        LOG.removeHandler(h)
