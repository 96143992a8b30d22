"""The training side: the typed run spec, the phases of a run, the Accelerate loop, checkpoints, run folders."""

from .errors import EXIT_PREEMPTED, ConfigError, Preempted, TrainingError
from .spec import RunSpec, build_spec, validate

__all__ = ["EXIT_PREEMPTED", "ConfigError", "Preempted", "RunSpec", "TrainingError", "build_spec", "validate"]
