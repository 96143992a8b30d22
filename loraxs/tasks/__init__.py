"""Task families: loading (Hub or local files), tokenisation, prompts, metrics. One module per family."""

from __future__ import annotations

from typing import Any


def build_task(cfg: Any, tokenizer: Any) -> Any:
    """The task object the training loop uses (``train`` items, ``collate``, ``evaluate``)."""
    if cfg.family == "glue":
        from .glue import GlueTask

        return GlueTask(cfg, tokenizer)
    raise ValueError(f"task.family={cfg.family!r} is unknown; valid: glue")
