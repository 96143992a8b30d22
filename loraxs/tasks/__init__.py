"""Task families: loading (Hub or local files), tokenisation, prompts, metrics. One module per family."""

from __future__ import annotations

from typing import Any


def build_task(cfg: Any, tokenizer: Any, train: bool = True) -> Any:
    """The task object the training loop uses (``train`` items, ``collate``, ``evaluate``); ``train=False``
    skips reading and tokenising the training set (evaluation only; GLUE always reads it)."""
    if cfg.family == "glue":
        from .glue import GlueTask

        return GlueTask(cfg, tokenizer)
    if cfg.family == "math":
        from .math import MathTask

        return MathTask(cfg, tokenizer, train)
    if cfg.family == "commonsense":
        from .commonsense import CommonsenseTask

        return CommonsenseTask(cfg, tokenizer, train)
    raise ValueError(f"task.family={cfg.family!r} is unknown; valid: glue, math, commonsense")


def check_data(cfg: Any) -> None:
    """Cheap checks of the local files a math / commonsense task names (FileNotFoundError, ValueError)."""
    from pathlib import Path

    if cfg.family == "math":
        if cfg.get("train_path") and not Path(cfg.train_path).is_file():
            raise FileNotFoundError(
                f"task.train_path={cfg.train_path} does not exist; give a JSON/JSONL file "
                "with query/response (or GSM8K question/answer) records"
            )
        if not cfg.get("train_path") and not cfg.get("hf_path"):
            raise ValueError("task.train_path or task.hf_path must be set")
        for name, spec in cfg.eval_sets.items():
            if name not in ("gsm8k", "math"):
                raise ValueError(f"task.eval_sets.{name} is unknown; valid: gsm8k, math")
            if spec.get("path") and not Path(spec.path).is_file():
                raise FileNotFoundError(f"task.eval_sets.{name}.path={spec.path} does not exist")
    elif cfg.family == "commonsense":
        from .commonsense import BENCHMARKS, test_file

        if not Path(cfg.train_path).exists():
            raise FileNotFoundError(
                f"task.train_path={cfg.train_path} does not exist; give commonsense_170k.json "
                "or a folder of <task>/train.json files"
            )
        for b in cfg.benchmarks:
            if b not in BENCHMARKS:
                raise ValueError(f"task.benchmarks: {b!r} is unknown; valid: {', '.join(BENCHMARKS)}")
            test_file(cfg.test_dir, b)
