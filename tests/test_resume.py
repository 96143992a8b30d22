"""Resume means the same run: the saved config goes on, other overrides are refused, a finished run is left as it
is, and the documented lr change after a divergence really applies from the next step and is recorded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import entrypoint, tiny_overrides, train_run


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _without(overrides: list[str], *keys: str) -> list[str]:
    return [o for o in overrides if o.split("=", 1)[0] not in keys]


@pytest.fixture
def killed_run(tiny_model_dir, tmp_path):
    """A 3-epoch run (6 steps per epoch) on settings far from the defaults, killed in epoch 2 after its epoch-1
    checkpoint; returns (folder, the overrides it was started with)."""
    base = [
        *tiny_overrides(tiny_model_dir, tmp_path),
        "task.epochs=3",
        "task.max_train_samples=48",
        "rank=4",
        "seed=7",
        "task.lr=1e-3",
    ]
    with pytest.raises(KeyboardInterrupt):
        train_run([*base, "trainer.interrupt_at_step=9"])
    (folder,) = list((tmp_path / "runs").iterdir())
    return folder, base


def test_resume_refuses_an_override_that_would_change_the_run(killed_run):
    folder, _ = killed_run
    before = _digest(folder)
    p = entrypoint("train.py", f"resume={folder}", "task.max_train_samples=2000")
    assert p.returncode == 2 and p.stdout == ""
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("error: task.max_train_samples=2000 cannot be given with resume=")
    assert "may change: task.lr, task.head_lr" in line
    p = entrypoint("train.py", f"resume={folder}", "adapter=lora")  # a group change, the same way
    assert p.returncode == 2 and p.stderr.startswith("error: adapter=lora cannot be given with resume=")
    assert _digest(folder) == before


def test_resume_without_overrides_continues_the_saved_config(killed_run, tmp_path):
    folder, base = killed_run
    p = entrypoint("train.py", f"resume={folder}", "trainer.interrupt_at_step=null")  # nothing else: not the defaults
    assert p.returncode == 0, p.stderr[-2000:]
    resumed = json.loads((folder / "metrics.json").read_text())
    full = train_run([*_without(base, "paths.output_dir"), f"paths.output_dir={tmp_path / 'uninterrupted'}"])
    assert resumed["status"] == "finished" and resumed["seed"] == 7
    assert [e["epoch"] for e in resumed["evals"]] == [1, 2, 3]
    assert resumed["evals"] == full["evals"] and resumed["total_steps"] == full["total_steps"] == 18
    assert resumed["resumes"][-1].keys() == {"time", "trainer.interrupt_at_step"}


def test_resuming_a_finished_run_changes_nothing(tiny_model_dir, tmp_path):
    done = train_run([*tiny_overrides(tiny_model_dir, tmp_path), "rank=2"])
    folder = Path(done["run_dir"])
    before = _digest(folder)
    p = entrypoint("train.py", f"resume={folder}")
    assert p.returncode == 0 and "the run has finished; nothing to do" in p.stdout
    assert _digest(folder) == before


def test_lr_change_on_resume_applies_from_the_next_step_and_is_recorded(killed_run, tmp_path):
    from omegaconf import OmegaConf

    from loraxs.training import validate
    from loraxs.training.loop import run
    from loraxs.training.resume import saved_config

    folder, base = killed_run
    cfg, changes = saved_config(folder, ["task.lr=1e-4", "trainer.interrupt_at_step=null"])
    assert changes == {"task.lr": [1e-3, 1e-4], "trainer.interrupt_at_step": [9, None]}
    resumed = run(validate(cfg), OmegaConf.to_container(cfg, resolve=True), {"resume_changes": changes})
    low = train_run(
        [*_without(base, "paths.output_dir", "task.lr"), "task.lr=1e-4", f"paths.output_dir={tmp_path / 'low'}"]
    )
    high = train_run([*_without(base, "paths.output_dir"), f"paths.output_dir={tmp_path / 'high'}"])
    lrs = [e["lr"] for e in resumed["evals"]]
    assert lrs[0] == pytest.approx(high["evals"][0]["lr"], rel=1e-12)  # epoch 1 ran at the old lr
    assert lrs[1:] == pytest.approx([e["lr"] for e in low["evals"][1:]], rel=1e-12)  # the new schedule from step 7
    assert lrs[1] == pytest.approx(high["evals"][1]["lr"] / 10, rel=1e-12)
    assert resumed["evals"][1:] != high["evals"][1:]  # and it trained differently
    assert json.loads((folder / "metrics.json").read_text())["resumes"][-1]["task.lr"] == [1e-3, 1e-4]
    assert "learning rate changed on resume: 0.001 -> 0.0001" in (folder / "train.log").read_text()


@pytest.mark.parametrize("layout", ["by_name", "by_position"])
def test_checkpoint_restores_the_optimizer_state_in_both_layouts(layout, tmp_path):
    """Checkpoints key the optimizer state by parameter name (what FSDP's helpers give, any process count);
    those of earlier versions key it by position (``optimizer.state_dict()``): both restore it exactly."""
    import torch
    from conftest import BERT_TARGETS, bert_batch, tiny_bert

    from loraxs import AdapterConfig, inject_adapters
    from loraxs.training import checkpoint

    def setup():
        model = tiny_bert(seed=0)
        cfg = AdapterConfig(method="loraxs", rank=2, target_modules=BERT_TARGETS, modules_to_save=["classifier"])
        inject_adapters(model, cfg)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW([{"params": params[:3], "lr": 1e-2}, {"params": params[3:], "lr": 1e-3}])
        return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))

    model, opt, sched = setup()
    for _ in range(2):
        model(**bert_batch()).loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    path = tmp_path / "last.pt"
    checkpoint.save(path, model, opt, sched, {"epoch": 1})
    saved = torch.load(path, weights_only=True)
    assert isinstance(saved["optimizer"]["param_groups"][0]["params"][0], str)  # keyed by name
    if layout == "by_position":
        saved["optimizer"] = opt.state_dict()
        torch.save(saved, path)
    fresh, fresh_opt, fresh_sched = setup()
    assert checkpoint.load(path, fresh, fresh_opt, fresh_sched) == {"epoch": 1}
    before, after = opt.state_dict(), fresh_opt.state_dict()

    def groups(state):  # torch's name-keyed load gives betas back as a list; AdamW reads either
        return [{**g, "betas": tuple(g["betas"])} for g in state["param_groups"]]

    assert groups(before) == groups(after) and before["state"].keys() == after["state"].keys()
    for i, state in before["state"].items():
        assert all(torch.equal(v, after["state"][i][k]) for k, v in state.items())
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))
    assert fresh_sched.state_dict() == sched.state_dict()


def test_resume_with_another_process_count_is_refused(killed_run, tmp_path):
    """The data split, the schedule length and the per-process random states depend on the process count."""
    import torch

    from loraxs.training import TrainingError

    folder, base = killed_run
    path = folder / "checkpoints" / "last.pt"
    payload = torch.load(path, weights_only=True)
    assert payload["progress"]["processes"] == 1
    payload["progress"]["processes"] = 2
    torch.save(payload, path)
    with pytest.raises(TrainingError) as info:
        train_run([*base, f"resume={folder}", "trainer.interrupt_at_step=null"])
    assert str(info.value).startswith(f"checkpoint {path} was written by 2 process(es) and this run has 1; resume")
