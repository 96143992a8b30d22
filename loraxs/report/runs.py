"""Reading run folders: each ``<runs>/<run>/`` with ``config.yaml`` and ``metrics.json`` becomes one :class:`Run`.

Knows nothing of training: only the files a run leaves behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Run:
    """What the report needs from one run folder."""

    folder: Path
    status: str  # finished | failed | interrupted | running
    model: str | None
    experiment: str | None
    task: str
    method: str
    rank: int | None
    seed: int | None
    lr: float | None
    log_every: int | None = None  # optimizer steps per training-loss window
    max_steps: int | None = None  # trainer.max_steps (0: the base model evaluated without training)
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics.json

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    def best(self, metric: str) -> float | None:
        """The best value of ``metric`` over the run's evaluations (max over epochs)."""
        values = [e[metric] for e in self.metrics.get("evals", []) if isinstance(e.get(metric), (int, float))]
        return max(values) if values else None

    def reported(self, metric: str) -> float | None:
        """``metric`` of the evaluation the run reports (its ``task.selection``: final model, best epoch, ...)."""
        value = self.metrics.get("reported", {}).get(metric)
        return value if isinstance(value, (int, float)) else None

    @property
    def params(self) -> int | None:
        """Trainable parameters as the papers count them: the adapter's (head excluded), all for full FT."""
        counts = self.metrics.get("trainable") or {}
        return counts.get("total") if self.method == "full" else counts.get("adapter")

    @property
    def loss_curve(self) -> list[float]:
        return list(self.metrics.get("train_loss_windows") or [])


def _config(folder: Path) -> dict[str, Any]:
    import yaml

    path = folder / "config.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def load_runs(root: str | Path) -> list[Run]:
    """Every run folder under ``root`` (a ``runs/`` folder, or an output folder holding one), oldest first;
    folders without a readable ``metrics.json`` are skipped."""
    root = Path(root)
    base = root / "runs" if (root / "runs").is_dir() else root
    runs = []
    for metrics_file in sorted(base.glob("*/metrics.json")):
        try:
            m = json.loads(metrics_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        cfg = _config(metrics_file.parent)
        choices = m.get("choices") or {}
        model = (cfg.get("model") or {}).get("name") or choices.get("model")
        runs.append(
            Run(
                folder=metrics_file.parent,
                status=m.get("status", "finished" if m.get("finished") else "running"),
                model=model,
                experiment=choices.get("experiment"),
                task=m.get("task") or (cfg.get("task") or {}).get("name"),
                method=m.get("adapter") or (cfg.get("adapter") or {}).get("method"),
                rank=m.get("rank"),
                seed=m.get("seed"),
                lr=(cfg.get("task") or {}).get("lr"),
                log_every=(cfg.get("trainer") or {}).get("log_every"),
                max_steps=(cfg.get("trainer") or {}).get("max_steps"),
                metrics=m,
            )
        )
    return runs
