"""Train and evaluate: ``python experiments/train.py task=qnli adapter=loraxs rank=16``.

Hydra composes configs/train.yaml with the groups model, task, adapter, trainer, logger, paths, hydra and the
optional experiment/ and sweep/. Multirun: ``python experiments/train.py -m adapter=lora,loraxs rank=4,8``.
Several processes: ``accelerate launch experiments/train.py ...``.

Bad config values fail in milliseconds with one line and exit code 2, before any model is loaded; a run that
cannot go on (diverged loss, unreachable Hub, unreadable checkpoint) exits with 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
GROUPS = ("model", "task", "adapter", "trainer", "logger", "paths", "experiment", "sweep")
os.environ.setdefault("LORAXS_ROOT", str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def check_group_overrides(argv: list[str]) -> None:
    """``group=option`` overrides must name an existing configs/<group>/<option>.yaml (checked before Hydra)."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if key not in GROUPS or value in ("null", ""):
            continue
        options = sorted(p.stem for p in (CONFIGS / key).glob("*.yaml"))
        for v in value.split(","):  # multirun lists
            if v not in options:
                fail(f"{key}={v} is not a config option; valid: {', '.join(options)}")


def main() -> None:
    check_group_overrides(sys.argv[1:])
    import hydra

    @hydra.main(version_base="1.3", config_path=str(CONFIGS), config_name="train")
    def _main(cfg) -> float | None:
        from loraxs.training import ConfigError, TrainingError, validate

        try:
            validate(cfg)
        except ConfigError as e:
            fail(str(e), 2)
        from loraxs.training.loop import run

        try:
            metrics = run(cfg)
        except (TrainingError, FileNotFoundError, RuntimeError) as e:
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__, 1)
        except KeyboardInterrupt:
            fail("interrupted; continue with resume=<run folder> (printed at the start of the log)", 130)
        best = metrics["best"].get(metrics["main_metric"], {})
        if int(os.environ.get("RANK", "0")) == 0:
            print(
                f"{metrics['task']} {metrics['adapter']}: best {metrics['main_metric']} = {best.get('value', float('nan')):.4f} "
                f"(epoch {best.get('epoch')}); trainable {metrics['trainable']}; run folder: {metrics['run_dir']}"
            )
        return best.get("value")

    _main()


if __name__ == "__main__":
    main()
