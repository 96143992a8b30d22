"""The resolved run spec: one lr rule for every method, the rank set once, unknown keys refused by both
entrypoints, Hydra's sweep grammar, keys that are read, warm-up rounding, selection rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, compose, llm_overrides, spec_of, tiny_overrides, train_run, write_tiny_math

from loraxs.training import ConfigError, build_spec

TRAIN = [sys.executable, str(ROOT / "experiments" / "train.py")]
EVAL = [sys.executable, str(ROOT / "experiments" / "eval.py")]


def _cli(cmd, args, **kw):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run(cmd + args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, **kw)


def _one_line(p) -> str:
    lines = [x for x in p.stderr.strip().splitlines() if x]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr[-2000:]
    return lines[0]


# ------------------------------------------------------------------ task.lr is the lr of every method
@pytest.mark.parametrize("adapter", ["lora", "loraxs", "loraxs_random", "lorasb", "full"])
def test_task_lr_override_sets_the_lr_of_every_method(adapter):
    spec = spec_of([f"adapter={adapter}", "task.lr=1e-3", "task=rte", "task.warmup_ratio=0.06"])
    assert spec.optim.lr == 1e-3
    default = spec_of([f"adapter={adapter}", "task=rte", "task.warmup_ratio=0.06"]).optim.lr
    # the preset rule: the task's recipe, or the adapter file's default for lora / full
    assert default == {"lora": 4e-4, "full": 2e-5}.get(adapter, 1e-3)


@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_the_optimizer_really_uses_task_lr(adapter, tiny_model_dir, tmp_path):
    over = [*tiny_overrides(tiny_model_dir, tmp_path), f"adapter={adapter}", "rank=4", "trainer.max_steps=1"]
    m = train_run([*over, "task.lr=1e-3", "task.head_lr=2e-3", "task.scheduler=constant", "task.warmup_ratio=0"])
    assert m["evals"][0]["lr"] == 1e-3  # the adapter group (for full: the body)
    sweep = [
        train_run([*over, f"task.lr={lr}", "task.scheduler=constant", "task.warmup_ratio=0"]) for lr in (1e-4, 3e-4)
    ]
    assert [s["evals"][0]["lr"] for s in sweep] == [1e-4, 3e-4]  # a sweep over task.lr sweeps every method


def test_head_lr_null_is_lr_and_the_optimizer_groups_use_them(tiny_model_dir, tmp_path):
    from loraxs import inject_adapters
    from loraxs.training.phases import load_base, make_accelerator, make_optimizer

    base = [*tiny_overrides(tiny_model_dir, tmp_path), "rank=4", "task.lr=3e-3"]
    for head_lr, expected in (("null", 3e-3), ("7e-3", 7e-3)):
        spec = spec_of([*base, f"task.head_lr={head_lr}", "trainer.weight_decay=0.1"])
        model, _ = load_base(spec, make_accelerator(spec))
        inject_adapters(model, spec.adapter)
        optimizer, _ = make_optimizer(model, spec, 10)
        lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
        assert lrs == {"adapter": 3e-3, "head": expected}
        assert {g["weight_decay"] for g in optimizer.param_groups} == {0.1}
    # the HF Trainer rule: biases and LayerNorm weights get no decay
    spec = spec_of([*base, "trainer.weight_decay=0.1", "trainer.decay_biases_and_norms=false"])
    model, _ = load_base(spec, make_accelerator(spec))
    inject_adapters(model, spec.adapter)
    optimizer, _ = make_optimizer(model, spec, 10)
    no_decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in no_decay}
    assert names == {n for n, p in model.named_parameters() if p.requires_grad and n.endswith("bias")}


# ------------------------------------------------------------------ the rank exists once
def test_the_rank_is_set_once(tiny_model_dir, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"adapter.rank=8 disagrees with rank=16; the rank is set once, with rank=8"):
        build_spec(compose(["adapter.rank=8"]))
    import wandb

    seen = {}

    class FakeRun:
        summary: dict = {}

        def log(self, *a, **k):
            pass

        def finish(self):
            pass

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(wandb, "init", lambda **kw: seen.update(kw) or FakeRun())
    over = [o for o in tiny_overrides(tiny_model_dir, tmp_path) if not o.startswith("logger=")]
    m = train_run([*over, "logger=wandb", "logger.mode=offline", "rank=8", "trainer.max_steps=0"])
    assert "_r8_" in Path(m["run_dir"]).name and m["rank"] == 8 and seen["group"] == "toy_sentiment-loraxs-r8"
    assert m["trainable"]["adapter"] == 2 * 4 * 64


# ------------------------------------------------------------------ keys: read, typed, or refused
def test_unknown_and_unread_keys_are_refused_by_train_py(tmp_path):
    for arg, message in (
        ("trainer.eval_every_epoch=true", "trainer.eval_every_epoch is not a config key (misspelt?); valid keys"),
        ("+trainer.max_step=1", "trainer.max_step is not a config key (a typo, or added with + but read by nothing)"),
        ("task.max_eval_sample=5", "task.max_eval_sample is not a config key (misspelt?); valid keys of task:"),
        ("task.epochs=two", "task.epochs='two' is invalid; expected an integer"),
        ("trainer.max_grad_norm=-1", "trainer.max_grad_norm=-1.0 is invalid; expected > 0"),
    ):
        p = _cli(TRAIN, [arg, f"paths.output_dir={tmp_path}"])
        assert p.returncode == 2 and message in _one_line(p), (arg, p.stderr[-1500:])
    assert not (tmp_path / "runs").exists()


def test_eval_py_refuses_a_misspelt_key_on_a_run_folder(tiny_llama_dir, tmp_path):
    data = write_tiny_math(tmp_path / "data")
    m = train_run([*llm_overrides(tiny_llama_dir, tmp_path, data), "adapter=lora", "rank=4", "trainer.max_steps=0"])
    p = _cli(EVAL, [f"run={m['run_dir']}", "task.max_eval_sample=5", f"out={tmp_path / 'ev'}"])
    assert p.returncode == 2 and "max_eval_sample" in _one_line(p)
    p = _cli(EVAL, [f"run={m['run_dir']}", "task=sst2", f"out={tmp_path / 'ev'}"])
    assert p.returncode == 2 and "task=sst2 changes a config group of run=" in _one_line(p)
    assert not (tmp_path / "ev").exists()
    p = _cli(EVAL, [f"run={m['run_dir']}", "task.max_eval_samples=2", f"out={tmp_path / 'ev'}"])
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["examples"] == 4  # 2 GSM8K + 2 MATH


def test_every_yaml_key_is_a_spec_field():
    """build_spec refuses unknown keys, so composing every option of every group proves each key is read."""
    from conftest import CONFIGS

    for group in ("model", "task", "adapter", "trainer", "logger"):
        for option in sorted(p.stem for p in (CONFIGS / group).glob("*.yaml")):
            over = [f"{group}={option}"] + (["task=rte", "task.warmup_ratio=0.06"] if option == "lorasb" else [])
            if group == "model" and "kind: decoder" in (CONFIGS / "model" / f"{option}.yaml").read_text():
                over.append("task=metamath")  # a decoder takes a generation task
            if group == "task" and "family: lm" in (CONFIGS / "task" / f"{option}.yaml").read_text():
                over.append("model=smollm2_135m")  # language modelling takes a decoder
            if group == "task" and option in ("metamath", "commonsense"):
                over.append("model=smollm2_135m")
            build_spec(compose(over))


# ------------------------------------------------------------------ Hydra's sweep grammar
def test_sweep_grammar_is_parsed_as_hydra_parses_it():
    sys.path.insert(0, str(ROOT / "experiments"))
    import train

    assert train.first_job(["adapter=glob(lora*)", "rank=range(4,9,4)", "task=choice(rte,cola)", "seed=3"]) == [
        "adapter=lora",
        "rank=4",
        "task=rte",
        "seed=3",
    ]
    train.check_group_overrides(["adapter=choice(lora,loraxs)", "adapter=glob(*)", "experiment=glob(glue_*)"])


def test_multirun_with_choice_and_glob(tiny_model_dir, tmp_path):
    over = [o for o in tiny_overrides(tiny_model_dir, tmp_path) if not o.startswith("rank")]
    p = _cli(TRAIN, ["-m", "adapter=choice(lora,loraxs)", "rank=4", "trainer.max_steps=0", *over])
    assert p.returncode == 0, p.stderr[-2000:]
    p = _cli(TRAIN, ["-m", "adapter=glob(loraxs*)", "rank=4", "trainer.max_steps=0", *over])
    assert p.returncode == 0, p.stderr[-2000:]
    runs = [json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "runs").iterdir()]
    assert sorted(m["adapter"] for m in runs) == ["lora", "loraxs", "loraxs", "loraxs_random"]
    p = _cli(TRAIN, ["-m", "adapter=choice(lora,dora)", *over])
    assert p.returncode == 2 and "adapter=dora is not a config option" in _one_line(p)


# ------------------------------------------------------------------ warm-up and evaluation schedule
def test_warmup_rounding_and_steps():
    o = spec_of(["task.warmup_ratio=0.06"]).optim
    assert (o.warmup_rounding, o.warmup(2680), o.warmup(100)) == ("floor", 160, 6)  # int(160.8), int(6.0)
    o = spec_of(["task.warmup_ratio=0.06", "task.warmup_rounding=ceil"]).optim
    assert (o.warmup(2680), o.warmup(100)) == (161, 6)
    assert spec_of(["task.warmup_steps=100"]).optim.warmup(2680) == 100


def test_eval_every_epoch_false_evaluates_the_final_model_once(tiny_model_dir, tmp_path):
    over = [*tiny_overrides(tiny_model_dir, tmp_path), "rank=4", "task.epochs=3", "task.max_train_samples=16"]
    m = train_run([*over, "task.eval_every_epoch=false", "task.selection=final"])
    assert [(e["epoch"], e["step"]) for e in m["evals"]] == [(3, 6)]
    assert m["reported"] == m["evals"][0] and m["selection"] == "final"
    m = train_run([*over, "task.selection=final"])  # every epoch evaluated, the last reported
    assert [e["epoch"] for e in m["evals"]] == [1, 2, 3] and m["reported"] == m["evals"][-1]


def test_llm_tasks_never_pick_an_epoch_on_the_test_sets():
    with pytest.raises(ConfigError, match=r"task.selection=best_epoch would pick the epoch by test-set scores"):
        build_spec(compose(["model=smollm2_135m", "task=metamath", "task.selection=best_epoch"]))
    for over in (["model=smollm2_135m", "task=wikitext2"], ["task=squad_v1"]):  # test text; SQuAD's dev = its test
        with pytest.raises(ConfigError, match=r"task.selection=best_epoch would pick the epoch by test-set scores"):
            build_spec(compose([*over, "task.selection=best_epoch", "task.eval_every_epoch=true"]))
    with pytest.raises(ConfigError, match=r"task.selection=val_loss needs held-out training examples"):
        build_spec(compose(["model=smollm2_135m", "task=metamath", "task.selection=val_loss"]))
    for task in ("metamath", "commonsense"):
        assert build_spec(compose(["model=smollm2_135m", f"task={task}"])).task.selection == "final"


def test_max_steps_zero_saves_and_evaluates_the_initialised_adapter(tiny_model_dir, tmp_path):
    m = train_run([*tiny_overrides(tiny_model_dir, tmp_path), "rank=4", "trainer.max_steps=0"])
    assert m["total_steps"] == 0 and [(e["epoch"], e["step"]) for e in m["evals"]] == [(0, 0)]
    assert (Path(m["run_dir"]) / "adapter" / "loraxs_adapter.safetensors").is_file()
    assert torch.isfinite(torch.tensor(m["reported"]["accuracy"]))
