"""LoRA-SB in training runs: the official η_eff of the presets, the same B R A on 1 and 2 processes, and resuming
without recomputing any init (no estimate, no SVD)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, commonsense_overrides, llm_overrides, tiny_overrides, train_run, write_tiny_math

CPU = ["model.dtype=float32", "trainer.mixed_precision=no", "trainer.max_steps=0"]
RECIPE = ("task.warmup_ratio", "task.epochs", "task.batch_size")  # keep the preset's own values


def _preset(overrides: list[str]) -> list[str]:
    return [o for o in overrides if not o.startswith(RECIPE)]


def test_math_preset_eta_is_the_official_formula(tiny_llama_dir, tmp_path):
    over = [
        *_preset(llm_overrides(tiny_llama_dir, tmp_path, write_tiny_math(tmp_path / "m"))),
        "experiment=math_lorasb",
    ]
    m = train_run([*over, "rank=4", *CPU])
    n_train = 10  # the tiny GSM8K-shaped training file
    # train_arithmetic.py: total = len(DataLoader(train, batch_size=eg_bs=3)) * epochs; eta = lr / (0.02 * total)
    assert m["init"] == {
        "lorasb_eta": 1e-4 / (0.02 * math.ceil(n_train / 3) * 1),
        "lorasb_samples": n_train,  # n = 50 capped by the 10 examples
        "lorasb_batch_size": 3,
    }


def test_commonsense_preset_eta_is_the_official_formula(tiny_llama_dir, tmp_path):
    over = [*_preset(commonsense_overrides(tiny_llama_dir, tmp_path, tmp_path / "cs")), "experiment=commonsense_lorasb"]
    m = train_run([*over, "rank=4", *CPU])
    n_train = 16  # 8 boolq + 8 winogrande
    assert m["init"]["lorasb_eta"] == 2e-3 / (0.02 * math.ceil(n_train / 10) * 2)  # train_cr.py, eg_bs 10, 2 epochs
    assert (m["init"]["lorasb_samples"], m["init"]["lorasb_batch_size"]) == (16, 10)


def _torchrun(nproc: int, args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*cmd, str(ROOT / "experiments" / "train.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )


def test_two_processes_give_the_same_lorasb_factors_as_one(tiny_model_dir, tmp_path):
    """n = 6 samples in batches of 2: one process computes batches 0, 1, 2; two processes split them (0, 2 | 1)
    and all-reduce. The tiny BERT has dropout 0.1: each batch's masks come from seed + batch index."""
    from safetensors.torch import load_file

    tensors = {}
    for nproc in (1, 2):
        out = tmp_path / f"p{nproc}"
        over = [o for o in tiny_overrides(tiny_model_dir, out) if not o.startswith("task.max_train")]
        args = [*over, "adapter=lorasb", "rank=4", "task.max_train_samples=32", "trainer.max_steps=0"]
        args += ["adapter.lorasb_n_samples=6", "adapter.lorasb_batch_size=2"]
        p = _torchrun(nproc, args)
        assert p.returncode == 0, p.stderr[-3000:]
        (run_dir,) = list((out / "runs").iterdir())
        m = json.loads((run_dir / "metrics.json").read_text())
        assert (m["init"]["lorasb_samples"], m["init"]["lorasb_batch_size"]) == (6, 2)
        tensors[nproc] = load_file(run_dir / "adapter" / "loraxs_adapter.safetensors")
    one, two = tensors[1], tensors[2]
    factors = [k for k in one if k.endswith(("lora_A", "lora_B", "lora_R"))]
    assert len(factors) == 3 * 8 and one.keys() == two.keys()
    for k in factors:
        assert torch.equal(one[k], two[k]), k
    r = one[factors[2]]
    assert torch.count_nonzero(r - torch.diag(torch.diagonal(r))) == 0 and r.abs().sum() > 0  # R = diag(S)


@pytest.mark.parametrize("adapter", ["loraxs", "lorasb"])
def test_resuming_does_not_recompute_the_init(adapter, tiny_model_dir, tmp_path, monkeypatch):
    base = [*tiny_overrides(tiny_model_dir, tmp_path), "task.epochs=2", "task.max_train_samples=32"]
    base += [f"adapter={adapter}", "rank=4"]
    full = train_run(base)
    with pytest.raises(KeyboardInterrupt):
        train_run([*base, "trainer.interrupt_at_step=6"])  # 4 steps per epoch: killed in epoch 2
    (killed,) = [d for d in (tmp_path / "runs").iterdir() if d != Path(full["run_dir"])]

    def forbidden(*args, **kwargs):
        raise AssertionError("resuming recomputed an init")

    import loraxs.inject
    import loraxs.training.phases

    monkeypatch.setattr(loraxs.inject, "init_xs_svd", forbidden)
    monkeypatch.setattr(loraxs.training.phases, "lorasb_init", forbidden)
    resumed = train_run([*base, f"resume={killed}"])
    assert resumed["evals"] == full["evals"]
    a = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(Path(full["run_dir"]) / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
