"""FSDP2 on 2 CPU processes (torchrun, gloo; ``tests/fsdp_cpu_train.py`` turns Accelerate's FSDP on there):
full fine-tuning of a tiny Llama with generation-graded evaluation, a checkpoint in the middle of an epoch, an
interruption and a resume that ends bit-identical to the uninterrupted run; the checkpoint holds full (gathered)
tensors keyed by name, so a single process resumes it too. Adapters and the LM tasks are refused under FSDP
(``task.selection=val_loss`` needs an adapter: the config check refuses it for full fine-tuning)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, llm_overrides, train_run, write_tiny_llama, write_tiny_math
from safetensors.torch import load_file

WRAPPER = ROOT / "tests" / "fsdp_cpu_train.py"


def fsdp_run(over: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(WRAPPER), *over]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """Full fine-tuning, 10 examples, 2 per process: 3 optimizer steps per epoch, 2 epochs, a checkpoint every
    2 steps (step 2 is in the middle of epoch 1), the loss logged every step, 3 questions per eval set; run whole, and run interrupted after
    step 3 (its checkpoint, of step 2, is kept as ``fsdp_last.pt`` before any resume)."""
    import shutil

    root = tmp_path_factory.mktemp("fsdp")
    model = write_tiny_llama(root / "llama")
    data = write_tiny_math(root / "data")

    def over(out: Path, *extra: str) -> list[str]:
        return [
            *llm_overrides(model, out, data),
            "adapter=full",
            "task.lr=1e-3",
            "task.epochs=2",
            "task.batch_size=2",
            "trainer.checkpoint_steps=2",
            "trainer.log_every=1",
            "task.max_eval_samples=3",  # 2 prompts for process 0, 1 for process 1 (padded to 2 under FSDP)
            *extra,
        ]

    p = fsdp_run(over(root / "whole"))
    assert p.returncode == 0, p.stderr[-3000:]
    p = fsdp_run(over(root / "split", "trainer.interrupt_at_step=3"))
    assert p.returncode != 0 and "trainer.interrupt_at_step=3" in p.stderr, p.stderr[-3000:]
    split = _only_run(root / "split")
    shutil.copy(split / "checkpoints" / "last.pt", root / "fsdp_last.pt")
    return {"root": root, "model": model, "over": over, "whole": _only_run(root / "whole"), "split": split}


def _only_run(out: Path) -> Path:
    (run_dir,) = list((out / "runs").iterdir())
    return run_dir


def test_fsdp_checkpoint_holds_full_tensors_keyed_by_name(setup):
    assert "2 process(es), FSDP" in (setup["whole"] / "train.log").read_text()
    ckpt = torch.load(setup["root"] / "fsdp_last.pt", weights_only=True)
    assert (ckpt["progress"]["step"], ckpt["progress"]["batches_done"]) == (2, 2)  # in the middle of epoch 1
    # gathered from the shards: every parameter with the unsharded model's shape
    shapes = {n: tuple(t.shape) for n, t in load_file(setup["whole"] / "model" / "model.safetensors").items()}
    assert {n: tuple(t.shape) for n, t in ckpt["model"].items()} == shapes
    assert set(ckpt["optimizer"]["state"]) == set(shapes)
    assert all(tuple(s["exp_avg"].shape) == shapes[n] for n, s in ckpt["optimizer"]["state"].items())
    assert all(float(s["step"]) == 2.0 for s in ckpt["optimizer"]["state"].values())
    assert len(ckpt["progress"]["rng"]) == 2  # one random state per process


def test_fsdp_resume_from_the_middle_of_an_epoch_is_bit_identical(setup):
    run_dir = setup["split"]
    p = fsdp_run([f"resume={run_dir}", "trainer.interrupt_at_step=null"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resumed from" in (run_dir / "train.log").read_text()
    whole = setup["whole"]
    a, b = load_file(whole / "model" / "model.safetensors"), load_file(run_dir / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (whole, run_dir))
    assert ma["train_loss_windows"] == mb["train_loss_windows"] and len(ma["train_loss_windows"]) == 6
    assert ma["evals"] == mb["evals"]
    for split in ("gsm8k", "math"):  # the generated texts, gathered from both processes in order
        pa, pb = (d / "predictions" / f"{split}_epoch2.jsonl" for d in (whole, run_dir))
        assert pa.read_text() == pb.read_text() and len(pa.read_text().splitlines()) == 3


def test_a_checkpoint_written_under_fsdp_loads_into_one_process(setup):
    """The FSDP checkpoint restores the plain (unsharded) model and its optimizer exactly."""
    from transformers import AutoModelForCausalLM

    from loraxs.training import checkpoint

    ckpt = torch.load(setup["root"] / "fsdp_last.pt", weights_only=True)
    model = AutoModelForCausalLM.from_pretrained(setup["model"])
    assert [g["name"] for g in ckpt["optimizer"]["param_groups"]] == ["adapter"]  # as make_optimizer groups them
    optimizer = torch.optim.AdamW([{"params": list(model.parameters()), "name": "adapter"}], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    progress = checkpoint.load(setup["root"] / "fsdp_last.pt", model, optimizer, scheduler)
    assert progress["step"] == 2
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(torch.equal(p, ckpt["model"][n]) for n, p in model.named_parameters())
    for p, state in optimizer.state.items():
        saved = ckpt["optimizer"]["state"][names[id(p)]]
        assert torch.equal(state["exp_avg"], saved["exp_avg"]) and torch.equal(state["exp_avg_sq"], saved["exp_avg_sq"])
    assert len(optimizer.state) == len(names)


@pytest.mark.parametrize(
    "task,extra,expected",
    [
        ("metamath", ["adapter=loraxs", "rank=4"], "FSDP shards full fine-tuning only (adapter=full); adapter=loraxs"),
        ("wikitext2", ["adapter=full"], "task=wikitext2 is not supported under FSDP"),
    ],
)
def test_what_fsdp_refuses_is_one_line(task, extra, expected, tiny_llama_dir, tmp_path, monkeypatch):
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType
    from conftest import lm_overrides

    from loraxs.training import TrainingError, loop, phases

    was = {}

    def fsdp_accelerator(spec):  # marked FSDP as tests/fsdp_cpu_train.py does
        accelerator = phases.make_accelerator(spec)
        was["type"] = PartialState._shared_state["distributed_type"]
        for shared in (PartialState._shared_state, AcceleratorState._shared_state):
            shared["distributed_type"] = DistributedType.FSDP
        return accelerator

    monkeypatch.setattr(loop, "make_accelerator", fsdp_accelerator)
    if task == "wikitext2":
        over = lm_overrides(tiny_llama_dir, tmp_path)
    else:
        over = llm_overrides(tiny_llama_dir, tmp_path, write_tiny_math(tmp_path / "data"))
    try:
        with pytest.raises(TrainingError) as info:
            train_run([*over, *extra])
    finally:  # the refusal resets AcceleratorState; the process-wide PartialState is put back here
        if "type" in was:
            PartialState._shared_state["distributed_type"] = was["type"]
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)
    assert not (tmp_path / "runs").exists()  # refused before the run folder is made
