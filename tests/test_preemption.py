"""Preemption-safe runs: SIGKILL at random moments (one of them while a checkpoint is being written) and a
resume end bit-identical to the uninterrupted run, mid-epoch kills included; SIGTERM checkpoints and exits 75;
an interrupted write's temporary file is removed on the next start; checkpoints rotate."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, entrypoint, tiny_overrides
from safetensors.torch import load_file

# Runs experiments/train.py after arranging to signal itself: at the n-th backward pass (mid-step, possibly
# mid-accumulation) or during the n-th write of checkpoints/last.pt (half of the temporary file on disk).
KILLER = r"""
import os, runpy, signal, sys
import torch
mode, n = os.environ["KILL_MODE"], int(os.environ["KILL_AT"])
sig = signal.SIGTERM if mode == "sigterm" else signal.SIGKILL
calls = [0]
if mode in ("backward", "sigterm"):
    backward = torch.Tensor.backward
    def counted(self, *a, **k):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), sig)
        return backward(self, *a, **k)
    torch.Tensor.backward = counted
else:
    save = torch.save
    def torn(obj, f, *a, **k):
        save(obj, f, *a, **k)
        if isinstance(f, str) and os.path.basename(f).startswith(".last.pt."):
            calls[0] += 1
            if calls[0] == n:
                data = open(f, "rb").read()
                open(f, "wb").write(data[: len(data) // 2])
                os.kill(os.getpid(), sig)
    torch.save = torn
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path(os.path.join(os.environ["LORAXS_ROOT"], "experiments", "train.py"), run_name="__main__")
"""


def overrides(model_dir: Path, out: Path) -> list[str]:
    """36 micro-batches (3 epochs x 12), 18 optimizer steps, a checkpoint every 2 steps, dropout on."""
    return [
        *tiny_overrides(model_dir, out),
        "task.epochs=3",
        "task.max_train_samples=48",
        "task.batch_size=4",
        "trainer.grad_accum=2",
        "trainer.checkpoint_steps=2",
        "rank=4",
        "adapter.dropout=0.1",
        "trainer.threads=1",
    ]


def killed_run(args: list[str], mode: str, at: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "KILL_MODE": mode, "KILL_AT": str(at), "LORAXS_ROOT": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", KILLER, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )


def only_run(out: Path) -> Path:
    (run,) = (out / "runs").iterdir()
    return run


def outcome(run: Path) -> tuple:
    """What must match the uninterrupted run: every evaluation, the reported one, and the adapter tensors."""
    m = json.loads((run / "metrics.json").read_text())
    tensors = {name: load_file(run / name / "loraxs_adapter.safetensors") for name in ("adapter", "adapter_best")}
    return m["status"], m["evals"], m["reported"], m["train_loss_windows"], tensors


def same(a: tuple, b: tuple) -> bool:
    return a[:4] == b[:4] and all(
        a[4][f].keys() == b[4][f].keys() and all(a[4][f][k].equal(b[4][f][k]) for k in a[4][f]) for f in a[4]
    )


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("whole")
    p = entrypoint("train.py", *overrides(tiny_model_dir, out))
    assert p.returncode == 0, p.stderr[-2000:]
    return outcome(only_run(out))


def kill_points() -> list[tuple[str, int]]:
    """Four random backward passes after the first checkpoint (step 2 = backward 4) and the 3rd checkpoint write."""
    rng = random.Random(2026)
    return [("backward", b) for b in sorted(rng.sample(range(5, 37), 4))] + [("checkpoint_write", 3)]


@pytest.mark.parametrize("mode,at", kill_points(), ids=lambda v: str(v))
def test_sigkill_then_resume_is_bit_identical(mode, at, uninterrupted, tiny_model_dir, tmp_path):
    args = overrides(tiny_model_dir, tmp_path)
    p = killed_run(args, mode, at)
    assert p.returncode == -9, p.stderr[-2000:]
    run = only_run(tmp_path)
    assert json.loads((run / "metrics.json").read_text())["status"] == "running"  # killed: nothing could record it
    leftovers = [q for q in run.rglob(".*") if q.name.endswith(".tmp")]
    assert bool(leftovers) == (mode == "checkpoint_write")
    p = entrypoint("train.py", f"resume={run}")
    assert p.returncode == 0, p.stderr[-2000:]
    assert same(outcome(run), uninterrupted), _debug_diff(outcome(run), uninterrupted)
    assert not [q for q in run.rglob(".*") if q.name.endswith((".tmp", ".old"))]  # cleaned up on the next start
    log = (run / "train.log").read_text()
    first, resumed = log.split("adapter injected without init")  # the resume: no SVD, no LoRA-SB estimate
    assert "adapter initialised by loraxs's init" in first and "initialised" not in resumed
    if mode == "checkpoint_write":
        assert "(left by an interrupted write)" in log


def test_sigterm_checkpoints_exits_75_and_resumes_exactly(uninterrupted, tiny_model_dir, tmp_path):
    args = overrides(tiny_model_dir, tmp_path)
    p = killed_run(args, "sigterm", 7)  # mid-step 4 of epoch 1: the checkpoint comes after that step
    run = only_run(tmp_path)
    assert p.returncode == 75, p.stderr[-2000:]
    error = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert error == [
        f"error: stopped by SIGTERM at step 4 with a checkpoint; continue with resume={run} (exit code 75)"
    ]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "preempted"
    import torch

    progress = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["progress"]
    assert (progress["step"], progress["epoch"], progress["batches_done"]) == (4, 0, 8)
    p = entrypoint("train.py", *overrides(tiny_model_dir, tmp_path), "skip_finished=true")  # a requeued job
    assert p.returncode == 0 and "resuming " in p.stdout, p.stdout + p.stderr[-2000:]
    assert same(outcome(run), uninterrupted), _debug_diff(outcome(run), uninterrupted)


def test_checkpoints_rotate(tiny_model_dir, tmp_path):
    p = entrypoint("train.py", *overrides(tiny_model_dir, tmp_path), "trainer.keep_checkpoints=3")
    assert p.returncode == 0, p.stderr[-2000:]
    files = sorted(q.name for q in (only_run(tmp_path) / "checkpoints").iterdir())
    assert files == ["last.pt", "step-00000014.pt", "step-00000016.pt"]


def _debug_diff(a: tuple, b: tuple) -> str:  # pragma: no cover - only in failure messages
    lines = []
    for i, name in enumerate(("status", "evals", "reported", "train_loss_windows")):
        if a[i] != b[i]:
            lines.append(f"{name}: {a[i]} != {b[i]}")
    for f in a[4]:
        for k in a[4][f]:
            if not a[4][f][k].equal(b[4][f].get(k, a[4][f][k] * 0 + 1e9)):
                lines.append(f"{f}/{k} differs")
    return "\n".join(lines[:12])


def test_a_resumed_wandb_run_does_not_log_the_same_steps_twice(tmp_path, monkeypatch):
    """The steps after the checkpoint are trained again on resume; W&B gets each step once."""
    import types

    import wandb

    from loraxs.training.tracker import Tracker

    logged = []

    class FakeRun:
        def log(self, values, step):
            logged.append(step)

        def finish(self):
            pass

    monkeypatch.setattr(wandb, "init", lambda **kw: FakeRun())
    monkeypatch.delenv("WANDB_MODE", raising=False)
    spec = types.SimpleNamespace(
        logger=types.SimpleNamespace(name="wandb", mode="offline", project="p", entity=None, group=None, tags=[]),
        task=types.SimpleNamespace(name="t"),
        adapter=types.SimpleNamespace(method="loraxs"),
        rank_tag="r4",
    )
    first = Tracker(spec, {}, tmp_path, True)
    for step in (1, 2, 3, 4, 5, 5):  # killed after step 5 (two records at step 5: train and eval)
        first.log({"x": step}, step)
    again = Tracker(spec, {}, tmp_path, True)  # resumed from the checkpoint of step 3
    for step in (4, 5, 6, 6, 7):
        again.log({"x": step}, step)
    assert logged == [1, 2, 3, 4, 5, 5, 6, 6, 7]
    assert (tmp_path / "wandb_id.txt").read_text() and (tmp_path / "wandb_step.txt").read_text() == "7"
