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
    if spec.family == "lm":
        from .lm import LmTask

        return LmTask(spec, tokenizer, train)
    if spec.family == "superglue":
        from .superglue import SuperGlueTask

        return SuperGlueTask(spec, tokenizer)
    if spec.family == "squad":
        from .squad import SquadTask

        return SquadTask(spec, tokenizer, train)
    raise ValueError(f"task.family={spec.family!r} is unknown; valid: glue, math, commonsense, lm, superglue, squad")


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
            try:
                test_file(spec.test_dir, b)
            except FileNotFoundError as e:
                raise FileNotFoundError(f"task.test_dir={spec.test_dir}: {e}") from None
    elif spec.family == "lm":
        _check_files(spec, ("train_path", "eval_path", "data_file"))
        if spec.data_file and not spec.split_chars:
            raise ValueError(f"task.data_file={spec.data_file} needs task.split_chars=[train, valid, test] lengths")
        if not (spec.data_file or spec.hf_path or (spec.train_path and spec.eval_path)):
            raise ValueError(
                f"task {spec.name}: set task.train_path and task.eval_path, task.data_file, or task.hf_path"
            )
    elif spec.family == "superglue":
        from .superglue import check_local

        if spec.data_dir is not None:
            check_local(spec.data_dir, spec.folder, [spec.train_split, spec.eval_split])
        elif spec.hf_path is None:
            raise ValueError(f"task {spec.name}: set task.data_dir (no Hub dataset is configured)")
    elif spec.family == "squad":
        _check_files(spec, ("train_path", "eval_path"))
        if not spec.hf_path and not spec.eval_path:
            raise ValueError(f"task {spec.name}: set task.eval_path (and task.train_path) or task.hf_path")


def _check_files(spec: Any, keys: tuple[str, ...]) -> None:
    from pathlib import Path

    for key in keys:
        value = getattr(spec, key)
        if value and not Path(value).is_file():
            raise FileNotFoundError(f"task.{key}={value} does not exist")


# training-set sizes of the Hub datasets the configs name (for dry-run cost estimates without downloading)
HUB_TRAIN_SIZES = {
    ("nyu-mll/glue", "cola"): 8_551,
    ("nyu-mll/glue", "sst2"): 67_349,
    ("nyu-mll/glue", "mrpc"): 3_668,
    ("nyu-mll/glue", "qnli"): 104_743,
    ("nyu-mll/glue", "rte"): 2_490,
    ("nyu-mll/glue", "stsb"): 5_749,
    ("nyu-mll/glue", "mnli"): 392_702,
    ("nyu-mll/glue", "qqp"): 363_846,
    ("meta-math/MetaMathQA", None): 395_000,
}
COMMONSENSE_170K = 170_420


def train_size(spec: Any) -> int | None:
    """The number of training examples a task spec will use, without loading a model or tokenising: counted in
    local files (lines of a tsv / JSONL, records of a JSON list), read from :data:`HUB_TRAIN_SIZES` (and a
    ``train[:N]`` split) for the Hub, capped by ``max_train_samples``, minus ``val_set_size``; ``None`` when
    unknown."""
    import json
    import re
    from pathlib import Path

    n: int | None = None
    if spec.family in ("lm", "superglue", "squad"):
        return None  # blocks, answer options and context windows are known only after tokenising
    if spec.family == "glue":
        if spec.data_dir is not None:
            from .glue import LAYOUTS, local_folder

            path = local_folder(spec.data_dir, spec.folder) / "train.tsv"
            if path.is_file():
                n = sum(1 for line in path.open(encoding="utf-8") if line.strip()) - int(LAYOUTS[spec.layout].header)
        else:
            n = HUB_TRAIN_SIZES.get((spec.hf_path, spec.hf_name))
    else:
        path = Path(spec.train_path) if spec.train_path else None
        if path is not None and path.is_file():
            text = path.read_text()
            n = len(json.loads(text)) if text.lstrip().startswith("[") else sum(1 for x in text.splitlines() if x)
        elif path is not None and path.is_dir():
            n = sum(len(json.loads(f.read_text())) for f in path.glob("*/train.json"))
        elif spec.family == "math":
            full = HUB_TRAIN_SIZES.get((spec.hf_path, None))
            m = re.fullmatch(r"train\[:(\d+)\]", spec.train_split)
            n = int(m.group(1)) if m else full
        else:
            n = COMMONSENSE_170K
    if n is None:
        return None
    if spec.max_train_samples:
        n = min(n, spec.max_train_samples)
    return n - getattr(spec, "val_set_size", 0)
