"""Errors the entrypoints turn into a one-line message and a non-zero exit."""


class ConfigError(ValueError):
    """A bad config value, found before anything heavy is loaded (exit code 2)."""


class TrainingError(RuntimeError):
    """A run that cannot go on: diverged loss, unusable checkpoint, missing model or data (exit code 1)."""


EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "try again"; a requeued job continues the run


class Preempted(TrainingError):
    """SIGTERM or SIGUSR1 (what SLURM sends before preemption) arrived: the run saved a checkpoint at the next
    optimizer step and stopped (exit code :data:`EXIT_PREEMPTED`); ``resume=<run>`` or a rerun of the same
    command with ``skip_finished=true`` continues it exactly."""
