"""Metrics to the run folder (``metrics.json``) and to W&B.

W&B runs offline unless ``logger.mode=online`` or ``WANDB_MODE`` says otherwise; the whole resolved config goes
to ``wandb.init``; group and tags come from task, adapter and rank. Only the main process logs.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from ..io import write_json_atomic, write_text_atomic


class Tracker:
    def __init__(self, spec: Any, resolved: dict[str, Any], run_dir: Path, main_process: bool) -> None:
        self.run = None
        self.logged = self.earlier = 0
        self.main = main_process
        self.run_dir = run_dir
        log = spec.logger
        if not main_process or log.name != "wandb":
            return
        mode = os.environ.get("WANDB_MODE") or log.mode
        if mode == "disabled":
            return
        import wandb

        task, method, rank_tag = spec.task.name, spec.adapter.method, spec.rank_tag
        # steps already logged by an earlier attempt of this run (a resume re-runs the steps after its
        # checkpoint; W&B would warn and drop them, or with a fresh offline file record them twice)
        step_file = run_dir / "wandb_step.txt"
        self.step_file = step_file
        self.logged = int(step_file.read_text().strip() or 0) if step_file.is_file() else 0
        self.earlier = self.logged  # steps up to this one were logged by an earlier attempt
        id_file = run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
        write_text_atomic(id_file, run_id)
        self.run = wandb.init(
            project=log.project,
            entity=log.entity,
            mode=mode,
            dir=str(run_dir),
            id=run_id,
            resume="allow",
            name=run_dir.name,
            group=log.group or f"{task}-{method}-{rank_tag}",
            tags=sorted({task, method, rank_tag, *log.tags}),
            config=resolved,
        )

    def log(self, values: dict[str, Any], step: int) -> None:
        if self.run is None or step <= self.earlier:
            return
        self.run.log(values, step=step)
        if step > self.logged:
            self.logged = step
            write_text_atomic(self.step_file, str(step))

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
