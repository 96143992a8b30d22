"""SIGTERM and SIGUSR1, what SLURM sends before it preempts or times out a job, become a stop request that the
training loop honours at its next optimizer step: it saves a checkpoint and stops with exit code
:data:`~loraxs.training.errors.EXIT_PREEMPTED` (75), and a resume continues exactly.

The handler only sets a flag (nothing else is safe inside a signal handler); the previous handlers come back
when the run ends. Handlers can only be installed from the main thread; elsewhere the request is never set.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None)


class StopRequest:
    """``signum`` is the first stop signal received since :meth:`install` (``None``: none)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "none"

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
