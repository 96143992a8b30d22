"""Grids that survive and resume: logging in every job, failed jobs recorded while the grid goes on, re-runs that
redo only what failed, run folders that record their overrides and table, sweep folders kept apart, and the table
scripts' dry-run listings (job counts equal to the official grids)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, tiny_overrides

TRAIN = [sys.executable, str(ROOT / "experiments" / "train.py")]


def _cli(args, **kw):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run(TRAIN + args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900, **kw)


def _runs(out: Path) -> list[tuple[Path, dict]]:
    return [(d, json.loads((d / "metrics.json").read_text())) for d in sorted((out / "runs").iterdir())]


def test_every_job_of_a_multirun_logs_like_the_first(tiny_model_dir, tmp_path):
    over = [o for o in tiny_overrides(tiny_model_dir, tmp_path) if not o.startswith("task.epochs")]
    p = _cli(["-m", "rank=2,4,8", "task.epochs=2", *over])
    assert p.returncode == 0, p.stderr[-2000:]
    runs = _runs(tmp_path)
    assert len(runs) == 3
    for folder, _ in runs:
        log = (folder / "train.log").read_text()
        assert "epoch 1 step" in log and "epoch 2 step" in log and "done in" in log, (folder, log)
    assert p.stderr.count("INFO done in") == 3  # the console too


def test_a_failed_job_is_recorded_the_grid_goes_on_and_a_rerun_redoes_only_it(tiny_model_dir, tmp_path):
    over = [*tiny_overrides(tiny_model_dir, tmp_path), "rank=4", "table=t", "skip_finished=true"]
    over += ["task.scheduler=constant", "task.warmup_ratio=0"]
    p = _cli(["-m", "task.lr=1e-3,1e30,5e-3", *over])  # 1e30: the loss becomes NaN
    assert p.returncode == 1
    assert "task.lr=1e30" not in p.stdout  # printed as a failure, not as a result
    assert re.search(r"error: toy_sentiment_loraxs_r4 seed=0 failed: loss became nan .*; the grid goes on", p.stderr)
    assert p.stderr.strip().splitlines()[-1].startswith("error: 1 job(s) failed")
    runs = _runs(tmp_path)
    status = {float(m["overrides"][0].removeprefix("task.lr=")): m["status"] for _, m in runs}
    assert status == {1e-3: "finished", 1e30: "failed", 5e-3: "finished"}
    failed = next((d, m) for d, m in runs if m["status"] == "failed")
    assert failed[1]["error"].startswith("loss became nan")
    assert "ERROR failed: loss became nan" in (failed[0] / "train.log").read_text()
    for _, m in runs:  # each run folder records its overrides, table and choices
        assert m["table"] == "t" and m["choices"]["adapter"] == "loraxs" and "rank=4" in m["overrides"]
    # the second invocation skips the two finished runs and redoes the failed one (here: fixed, so it finishes)
    p = _cli(["-m", "task.lr=1e-3,1e-2,5e-3", *over])
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("skipped toy_sentiment_loraxs_r4 seed=0: finished in") == 2
    assert len(_runs(tmp_path)) == 4
    p = _cli(["-m", "task.lr=1e30", *over])  # still failing: tried again, recorded again
    assert p.returncode == 1 and len(_runs(tmp_path)) == 5


def test_an_interrupted_run_is_resumed_by_the_rerun(tiny_model_dir, tmp_path):
    over = [*tiny_overrides(tiny_model_dir, tmp_path), "rank=4", "task.epochs=2", "skip_finished=true"]
    p = _cli([*over, "trainer.interrupt_at_step=3"])
    assert p.returncode == 130
    ((folder, m),) = _runs(tmp_path)
    assert m["status"] == "interrupted"
    p = _cli(over)
    assert p.returncode == 0 and f"resuming toy_sentiment_loraxs_r4 seed=0 in {folder}" in p.stdout, p.stderr[-2000:]
    ((folder2, m2),) = _runs(tmp_path)
    assert folder2 == folder and m2["status"] == "finished" and [e["epoch"] for e in m2["evals"]] == [1, 2]


def test_sweep_folders_do_not_overwrite_each_other(tiny_model_dir, tmp_path):
    over = [*tiny_overrides(tiny_model_dir, tmp_path), "trainer.max_steps=0"]
    for ranks in ("rank=2,4", "rank=8"):
        assert _cli(["-m", ranks, *over]).returncode == 0
    sweeps = sorted((tmp_path / "sweeps").iterdir())
    assert len(sweeps) == 2
    params = [(s / "multirun.yaml").read_text() for s in sweeps]
    assert "rank=2,4" in params[0] and "rank=8" in params[1]


def _dry_run(script: str, *args: str) -> list[str]:
    p = subprocess.run(
        ["bash", f"scripts/{script}", "--dry-run", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=3600,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return [line for line in p.stdout.splitlines() if line.startswith("[dry-run] ")]


@pytest.mark.parametrize(
    "script,jobs",
    [
        ("table_loraxs_math.sh", 2),
        ("table_loraxs_commonsense.sh", 2),
        ("table_lorasb_math.sh", 16),  # 2 models x (LoRA-SB 3 + LoRA-XS 3 + LoRA + full)
        ("table_lorasb_commonsense.sh", 8),
    ],
)
def test_table_scripts_list_their_jobs(script, jobs):
    lines = _dry_run(script)
    assert len(lines) == jobs
    assert all(re.search(r": [\d,]+ optimizer steps$", line) for line in lines), lines


@pytest.mark.slow
@pytest.mark.parametrize(
    "script,jobs,per_task",
    [
        # LoRA-XS: 270 per task for CoLA / SST-2 / QNLI, one MNLI run per rank, 120 per task for MRPC / RTE / STS-B
        ("table_loraxs_glue.sh", 3 * 270 + 6 + 3 * 120, {"cola": 270, "mnli": 6, "rte": 120}),
        ("table_loraxs_ablation.sh", 2 * 3 * 270, {"sst2": 540}),
        ("table_lorasb_glue.sh", 6 * 31, {"cola": 31}),  # per task: 3 + 3 ranks x 4 lr, LoRA 4 lr, full 3 lr
        ("table_lora_glue.sh", 2 * 8 * 5, {"rte": 10}),  # 2 models x 8 tasks x 5 seeds
    ],
)
def test_big_table_scripts_compose_every_job(script, jobs, per_task):
    lines = _dry_run(script)
    assert len(lines) == jobs
    for task, n in per_task.items():
        assert sum(f" {task}_" in line for line in lines) == n


def test_slurm_launcher_option_composes():
    from conftest import CONFIGS
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = hydra_compose(
            "train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.array_parallelism) == ("gpu", 1, 64)


def test_a_grid_runs_through_submitit_in_parallel_processes(tiny_model_dir, tmp_path):
    """submitit's local executor (the SLURM launcher's sibling): the jobs are pickled and run in their own processes,
    as on a cluster."""
    over = [*tiny_overrides(tiny_model_dir, tmp_path), "trainer.max_steps=0"]
    p = _cli(
        ["-m", "hydra/launcher=submitit_local", f"hydra.launcher.submitit_folder={tmp_path}/sub/%j", "rank=2,4", *over]
    )
    assert p.returncode == 0, p.stderr[-3000:]
    runs = _runs(tmp_path)
    assert sorted(m["rank"] for _, m in runs) == [2, 4] and all(m["status"] == "finished" for _, m in runs)
