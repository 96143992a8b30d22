"""The run folder: one per run, unique even for runs started in the same second, the same on every process.

Layout::

    <paths.output_dir>/runs/<run_name>_<YYYYmmdd-HHMMSS>_<6 hex>/
        config.yaml          resolved config
        train.log            the log (main process)
        metrics.json         status (running / finished / failed / interrupted), the run's fingerprint, Hydra
                             overrides and code version (git commit), trainable counts, every evaluation, the reported one, wall time (atomic)
        adapter/             final adapter (library format), adapter_best/ the best epoch's
        checkpoints/last.pt  resumable state (atomic)
        wandb/               W&B files (offline mode)
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LOG = logging.getLogger("loraxs")
# keys of the resolved config that do not change what a run computes (where it writes, how it logs, which table
# it is listed in, evaluation batching): two runs that differ only in these are the same run
VOLATILE_KEYS = (
    "paths",
    "logger",
    "resume",
    "run_name",
    "table",
    "export_to",
    "skip_finished",
    "dry_run",
    "trainer.progress",
    "trainer.threads",
    "trainer.num_workers",
    "trainer.interrupt_at_step",
    "trainer.checkpoint_every",
    "trainer.checkpoint_steps",
    "trainer.keep_checkpoints",
    "trainer.save_best_adapter",
    "trainer.eval_batch_size",
)


def fingerprint(resolved: dict[str, Any]) -> str:
    """A hash of the resolved config without :data:`VOLATILE_KEYS`: equal for runs that compute the same thing."""
    cfg = json.loads(json.dumps(resolved))
    for key in VOLATILE_KEYS:
        *parents, leaf = key.split(".")
        node = cfg
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


PROJECT_ROOT = Path(__file__).resolve().parents[2]


def code_version(root: Path = PROJECT_ROOT) -> dict[str, Any] | None:
    """``{"commit": <40 hex>, "dirty": bool}`` of the git checkout the code runs from (``dirty``: tracked files
    changed since the commit), or ``None`` outside a git checkout or without git."""
    try:
        git = ["git", "-C", str(root)]
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(changed.stdout.strip())}


def previous_runs(base: Path, fp: str) -> list[tuple[Path, dict[str, Any]]]:
    """Run folders under ``base/runs`` whose ``metrics.json`` carries fingerprint ``fp``, oldest first."""
    found = []
    for metrics_file in sorted((base / "runs").glob("*/metrics.json")):
        try:
            metrics = json.loads(metrics_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if metrics.get("fingerprint") == fp:
            found.append((metrics_file.parent, metrics))
    return found


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
    LOG.disabled = False  # Hydra's logging config disables existing loggers before every job of a multirun
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


def selected_output(run_dir: Path) -> Path | None:
    """The folder holding what a finished run reports: ``adapter_best/``, else ``adapter/``, else ``model/``."""
    for name in ("adapter_best", "adapter", "model"):
        if (run_dir / name).is_dir():
            return run_dir / name
    return None


def export(run_dir: Path, dest: str | Path) -> Path:
    """Copy the run's reported adapter (or model) folder to ``dest``, atomically (a temporary sibling, renamed;
    an existing ``dest`` is replaced). E.g. the MNLI adapter of each rank into the official checkpoint layout."""
    import shutil
    import tempfile

    source = selected_output(run_dir)
    if source is None:
        raise FileNotFoundError(f"{run_dir} holds no adapter_best/, adapter/ or model/ to export")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def remove_temp_files(run_dir: Path) -> list[Path]:
    """Delete what interrupted atomic writes leave in a run folder: ``.<name>.<random>.tmp`` files and
    ``.<name>.tmp`` / ``.<name>.old`` folders (see ``loraxs.io.atomic_write`` and the folder replace of the
    loop); returns what was removed."""
    import shutil

    removed = []
    for path in sorted(run_dir.rglob(".*")):
        if not path.name.endswith((".tmp", ".old")) or not path.exists():
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    return removed
