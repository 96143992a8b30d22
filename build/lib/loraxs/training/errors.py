"""Errors the entrypoints turn into a one-line message and a non-zero exit."""


class ConfigError(ValueError):
    """A bad config value, found before anything heavy is loaded (exit code 2)."""


class TrainingError(RuntimeError):
    """A run that cannot go on: diverged loss, unusable checkpoint, missing model or data (exit code 1)."""
