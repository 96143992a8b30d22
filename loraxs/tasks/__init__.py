"""Task families: loading (Hub or local files), tokenisation, prompts, metrics. One module per family.

A task object has ``train`` (encoded examples), ``val`` (held-out encoded examples, possibly empty),
``evals`` (the evaluation sets), ``collate`` and ``evaluate(model, accelerator, batch_size, progress)``
returning ``(metrics, per-example records)``.
"""

from __future__ import annotations

from typing import Any


def build_task(spec: Any, tokenizer: Any, train: bool = True) -> Any:
    """The task object for a task spec (``loraxs.training.spec``); ``train=False`` skips reading and tokenising
    the training set (evaluation only; GLUE always reads it)."""
    if spec.family == "glue":
        from .glue import GlueTask

        return GlueTask(spec, tokenizer)
    if spec.family == "math":
        from .math import MathTask

        return MathTask(spec, tokenizer, train)
    if spec.family == "commonsense":
        from .commonsense import CommonsenseTask

        return CommonsenseTask(spec, tokenizer, train)
    raise ValueError(f"task.family={spec.family!r} is unknown; valid: glue, math, commonsense")


def check_data(spec: Any) -> None:
    """Cheap checks of the local files a task names (FileNotFoundError, ValueError), before anything loads."""
    from pathlib import Path

    if spec.family == "glue":
        from .glue import LAYOUTS, check_local

        if spec.layout not in LAYOUTS:
            raise ValueError(f"task.layout={spec.layout!r} is unknown; valid: {', '.join(LAYOUTS)}")
        if spec.data_dir is not None:
            check_local(spec.data_dir, spec.folder, ["train", *spec.eval_splits.values()])
        elif spec.hf_path is None:
            raise ValueError(f"task {spec.name}: set task.data_dir (no Hub dataset is configured)")
    elif spec.family == "math":
        if spec.train_path and not Path(spec.train_path).is_file():
            raise FileNotFoundError(
                f"task.train_path={spec.train_path} does not exist; give a JSON/JSONL file "
                "with query/response (or GSM8K question/answer) records"
            )
        if not spec.train_path and not spec.hf_path:
            raise ValueError("task.train_path or task.hf_path must be set")
        for name, es in spec.eval_sets.items():
            if es.path and not Path(es.path).is_file():
                raise FileNotFoundError(f"task.eval_sets.{name}.path={es.path} does not exist")
            if not es.path and not es.hf_path:
                raise ValueError(f"task.eval_sets.{name}: set path (a local JSON/JSONL) or hf_path")
    elif spec.family == "commonsense":
        from .commonsense import BENCHMARKS, test_file

        if not Path(spec.train_path).exists():
            raise FileNotFoundError(
                f"task.train_path={spec.train_path} does not exist; give commonsense_170k.json "
                "or a folder of <task>/train.json files"
            )
        for b in spec.benchmarks:
            if b not in BENCHMARKS:
                raise ValueError(f"task.benchmarks: {b!r} is unknown; valid: {', '.join(BENCHMARKS)}")
            test_file(spec.test_dir, b)
