"""Train and evaluate: ``python experiments/train.py task=qnli adapter=loraxs rank=16``.

Hydra composes configs/train.yaml with the groups model, task, adapter, trainer, logger, paths, hydra and the
optional experiment/ and sweep/. Multirun: ``python experiments/train.py -m adapter=lora,loraxs rank=4,8`` (the
whole override grammar: ``adapter='choice(lora,loraxs)'``, ``experiment='glob(glue_*)'``, ``rank='range(4,9,4)'``).
Several processes: ``accelerate launch experiments/train.py ...`` or ``torchrun``.

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


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def parse_overrides(overrides: list[str]) -> list:
    """Hydra's own parse of the overrides (its full grammar); one line on a syntax error."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        fail(f"cannot parse the overrides: {str(e).splitlines()[0]}")


def check_group_overrides(overrides: list[str]) -> None:
    """Every ``group=option`` (also inside ``choice(...)``, comma lists and ``glob(...)``) must name an existing
    ``configs/<group>/<option>.yaml``; one line on error."""
    from hydra.core.override_parser.types import ChoiceSweep, Glob, OverrideType

    for o in parse_overrides(overrides):
        if o.key_or_group not in GROUPS or o.type == OverrideType.DEL:
            continue
        value, options = o.value(), group_options(o.key_or_group)
        if isinstance(value, Glob):
            if not value.filter(options):
                fail(f"{o.input_line} matches no option of {o.key_or_group}; valid: {', '.join(options)}")
            continue
        values = value.list if isinstance(value, ChoiceSweep) else [value]
        for v in values:
            if v is not None and str(v) not in options:
                fail(f"{o.key_or_group}={v} is not a config option; valid: {', '.join(options)}")


def first_job(overrides: list[str]) -> list[str]:
    """The overrides of the first job of a (multi)run: every sweep replaced by its first value."""
    from hydra.core.override_parser.types import ChoiceSweep, Glob, OverrideType, RangeSweep

    out = []
    for o in parse_overrides(overrides):
        if not o.is_sweep_override():
            out.append(o.input_line)
            continue
        v = o.value()
        if isinstance(v, Glob):
            first = v.filter(group_options(o.key_or_group))[0]
        elif isinstance(v, RangeSweep):
            first = v.start
        elif isinstance(v, ChoiceSweep):
            first = v.list[0]
        else:  # an interval sweep: the optimiser plugins' business
            continue
        prefix = {OverrideType.ADD: "+", OverrideType.FORCE_ADD: "++"}.get(o.type, "")
        out.append(f"{prefix}{o.get_key_element()}={first}")
    return out


def compose_first_job(overrides: list[str]):
    """Compose the first job with Hydra's compose API, so that Hydra's own errors (a key that does not exist, a
    value it cannot merge) are one line here instead of its multi-line report; returns the config."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    job = first_job(overrides)
    try:
        with initialize_config_dir(str(CONFIGS), version_base="1.3"):
            return compose("train", overrides=job)
    except (HydraException, OmegaConfBaseException) as e:
        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
        bad = next((o for o in job if lines and f"'{o.split('=', 1)[0].lstrip('+~')}'" in lines[0]), None)
        if bad is not None and any(x.startswith("To append to your config use +") for x in lines):
            key = bad.split("=", 1)[0].lstrip("+~")
            parent = key.rpartition(".")[0]
            try:
                with initialize_config_dir(str(CONFIGS), version_base="1.3"):
                    node = compose("train", overrides=[o for o in job if o != bad])
                for part in parent.split(".") if parent else []:
                    node = node[part]
                valid = f"; valid keys of {parent or 'the config'}: {', '.join(sorted(node.keys()))}"
            except Exception:
                valid = ""
            fail(f"{key} is not a config key (misspelt?){valid}")
        fail(" ".join(lines[:2]) if lines else type(e).__name__)


def hydra_overrides(argv: list[str]) -> list[str]:
    """The overrides in ``argv``, as Hydra's own argument parser sees them (flags and their values skipped)."""
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv)
    return list(args.overrides)


HELP_FLAGS = ("--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc")


def precheck(argv: list[str]) -> None:
    """Before Hydra runs anything: the overrides parse, name existing options, compose, and the first job's spec
    is valid; each failure is one line on stderr and exit code 2."""
    if any(a.split("=", 1)[0] in HELP_FLAGS for a in argv):
        return
    overrides = hydra_overrides(argv)
    check_group_overrides(overrides)
    cfg = compose_first_job(overrides)
    from loraxs.training import ConfigError, validate

    try:
        validate(cfg)
    except ConfigError as e:
        fail(str(e))


FAILED: list[str] = []  # jobs of this multirun that failed (the grid goes on)


def plan_line(spec) -> str:
    """A dry run's line: table, run name, seed, optimizer steps (one process)."""
    from loraxs.tasks import train_size
    from loraxs.training.phases import optimizer_steps

    n = train_size(spec.task)
    steps = "?" if n is None else f"{optimizer_steps(n, spec, 1):,}"
    return (
        f"[dry-run] {spec.table or '-'} {spec.model.name} {spec.name} seed={spec.seed} lr={spec.optim.lr:g}: "
        f"{steps} optimizer steps"
    )


def job(cfg) -> float | None:
    """One job: validate, (dry run | skip a finished twin | resume an interrupted one), run, report."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from loraxs.training import ConfigError, validate

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        spec = validate(cfg)
    except ConfigError as e:
        if not multirun:
            fail(str(e), 2)
        FAILED.append(f"{' '.join(hydra_cfg.overrides.task)}: {e}")
        print(f"error: {e} (job {' '.join(hydra_cfg.overrides.task)}); the grid goes on", file=sys.stderr, flush=True)
        return None
    if spec.dry_run:
        print(plan_line(spec), flush=True)
        return None
    resolved = OmegaConf.to_container(cfg, resolve=True)
    info = {
        "overrides": list(hydra_cfg.overrides.task),
        "choices": {g: hydra_cfg.runtime.choices.get(g) for g in ("model", "task", "adapter", "experiment", "sweep")},
    }
    if spec.skip_finished and spec.resume is None:
        import dataclasses

        from loraxs.training.run_folder import fingerprint, previous_runs

        previous = previous_runs(Path(spec.paths.output_dir), fingerprint(resolved))
        done = [(d, m) for d, m in previous if m.get("status") == "finished"]
        if done:
            folder, metrics = done[-1]
            print(f"skipped {spec.name} seed={spec.seed}: finished in {folder}", flush=True)
            if spec.export_to and not Path(spec.export_to).exists():
                from loraxs.training.run_folder import export

                print(f"exported {export(folder, spec.export_to)}", flush=True)
            return metrics.get("reported", {}).get(metrics.get("main_metric"))
        unfinished = [d for d, m in previous if m.get("status") in ("running", "interrupted", "preempted")]
        if unfinished and (unfinished[-1] / "checkpoints" / "last.pt").is_file():
            spec = dataclasses.replace(spec, resume=str(unfinished[-1]))
            print(f"resuming {spec.name} seed={spec.seed} in {unfinished[-1]}", flush=True)
    return execute(spec, resolved, info, multirun)


def execute(spec, resolved: dict, info: dict, multirun: bool = False) -> float | None:
    """Run one job and print its result line; a run that cannot go on exits 1 (alone) or is recorded and the
    grid goes on (multirun)."""
    from loraxs.training import EXIT_PREEMPTED, Preempted, TrainingError
    from loraxs.training.loop import run

    try:
        metrics = run(spec, resolved, info)
    except Preempted as e:  # SIGTERM / SIGUSR1: checkpointed; a requeued job (or resume=) continues
        fail(str(e), EXIT_PREEMPTED)
    except (TrainingError, FileNotFoundError, RuntimeError, ValueError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not multirun:
            fail(message, 1)
        FAILED.append(f"{spec.name} seed={spec.seed}: {message}")
        print(f"error: {spec.name} seed={spec.seed} failed: {message}; the grid goes on", file=sys.stderr, flush=True)
        return None
    except KeyboardInterrupt:
        fail("interrupted; continue with resume=<run folder> (printed at the start of the log)", 130)
    reported, name = metrics["reported"], metrics["main_metric"]
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"{metrics['task']} {metrics['adapter']}: {name} = {reported.get(name, float('nan')):.4f} "
            f"({metrics['selection']}: epoch {reported.get('epoch')}, step {reported.get('step')}); "
            f"trainable {metrics['trainable']}; run folder: {metrics['run_dir']}",
            flush=True,
        )
    return reported.get(name)


def resume(argv: list[str], folder: str) -> None:
    """``resume=<run folder>``: the run's saved config goes on; overrides other than
    ``loraxs.training.resume.MAY_CHANGE`` are refused with one line; a finished run is left as it is."""
    if any(a in ("-m", "--multirun") for a in argv):
        fail("resume= continues one run; a grid continues its unfinished runs with skip_finished=true")
    from omegaconf import OmegaConf

    from loraxs.training import ConfigError, validate
    from loraxs.training.resume import saved_config, status

    try:
        cfg, changes = saved_config(folder, hydra_overrides(argv))
        spec = validate(cfg)
    except ConfigError as e:
        fail(str(e))
    if status(folder) == "finished":
        print(f"resume={folder}: the run has finished; nothing to do (its files are unchanged)")
        return
    execute(spec, OmegaConf.to_container(cfg, resolve=True), {"resume_changes": changes})


def resume_folder(argv: list[str]) -> str | None:
    """The value of a ``resume=`` override in ``argv`` (``None`` if absent or null)."""
    if any(a.split("=", 1)[0] in HELP_FLAGS for a in argv):
        return None
    for o in parse_overrides(hydra_overrides(argv)):
        if o.get_key_element().lstrip("+~") == "resume" and o.value() not in (None, "null"):
            return str(o.value())
    return None


def main() -> None:
    folder = resume_folder(sys.argv[1:])
    if folder is not None:
        resume(sys.argv[1:], folder)
        return
    precheck(sys.argv[1:])
    import hydra

    hydra.main(version_base="1.3", config_path=str(CONFIGS), config_name="train")(job)()
    if FAILED:
        fail(f"{len(FAILED)} job(s) failed (each run folder says why): {'; '.join(FAILED)[:1500]}", 1)


if __name__ == "__main__":
    main()
