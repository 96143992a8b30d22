"""The training side: the typed run spec, the phases of a run, the Accelerate loop, checkpoints, run folders."""

from .errors import ConfigError, TrainingError
from .spec import RunSpec, build_spec, validate

__all__ = ["ConfigError", "RunSpec", "TrainingError", "build_spec", "validate"]
