"""The training side: config validation, the Accelerate loop, checkpoints, the run folder and logging."""

from .errors import ConfigError, TrainingError
from .settings import adapter_config, validate

__all__ = ["ConfigError", "TrainingError", "adapter_config", "validate"]
