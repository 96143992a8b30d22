"""Metrics to the run folder (``metrics.json``) and to W&B.

W&B runs offline unless ``logger.mode=online`` or ``WANDB_MODE`` says otherwise; the whole resolved config goes
to ``wandb.init``; group and tags come from task, adapter and rank. Only the main process logs.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from ..io import write_json_atomic


class Tracker:
    def __init__(self, cfg: Any, resolved: dict[str, Any], run_dir: Path, main_process: bool) -> None:
        self.run = None
        self.main = main_process
        self.run_dir = run_dir
        if not main_process or cfg.logger.name != "wandb":
            return
        mode = os.environ.get("WANDB_MODE") or cfg.logger.get("mode", "offline")
        if mode == "disabled":
            return
        import wandb

        task, method = cfg.task.name, cfg.adapter.method
        rank_tag = f"r{cfg.rank}" if method != "full" else "full"
        id_file = run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
        id_file.write_text(run_id)
        self.run = wandb.init(
            project=cfg.logger.get("project", "loraxs"),
            entity=cfg.logger.get("entity"),
            mode=mode,
            dir=str(run_dir),
            id=run_id,
            resume="allow",
            name=run_dir.name,
            group=cfg.logger.get("group") or f"{task}-{method}-{rank_tag}",
            tags=sorted({task, method, rank_tag, *list(cfg.logger.get("tags") or [])}),
            config=resolved,
        )

    def log(self, values: dict[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log(values, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        if self.main:
            write_json_atomic(self.run_dir / "metrics.json", metrics)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
