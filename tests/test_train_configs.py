"""Every option of every config group, and every experiment and sweep file, composes and trains one step."""

import json

import pytest
from conftest import (
    CONFIGS,
    commonsense_overrides,
    compose,
    llm_overrides,
    lm_overrides,
    tiny_overrides,
    train_run,
    write_tiny_math,
    write_tiny_squad,
    write_tiny_superglue,
)

GLUE_TASKS = ["cola", "sst2", "mrpc", "qnli", "rte", "stsb", "mnli", "qqp"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_every_group_has_documented_options():
    for group in ("model", "task", "adapter", "trainer", "logger", "paths", "hydra", "experiment", "sweep"):
        opts = options(group)
        assert opts, group
        for o in opts:
            text = (CONFIGS / group / f"{o}.yaml").read_text()
            assert text.lstrip().startswith("#"), f"{group}/{o}.yaml starts with no comment"
    assert set(options("adapter")) == {"lora", "loraxs", "loraxs_random", "lorasb", "full"}
    assert {"smollm2_135m", "mistral_7b", "gemma_7b", "gemma2_9b", "llama3_2_3b", "llama3_8b"} <= set(options("model"))
    assert {"metamath", "commonsense"} <= set(options("task"))
    assert set(GLUE_TASKS) <= set(options("task"))
    assert {"minilm_l6", "roberta_base", "roberta_large"} <= set(options("model"))


def _one_step(overrides, tmp_path):
    metrics = train_run([*overrides, "trainer.max_steps=1"])
    run_dir = metrics["run_dir"]
    saved = json.loads((tmp_path / "runs" / run_dir.split("/")[-1] / "metrics.json").read_text())
    assert saved["finished"] and saved["evals"][0]["step"] == 1
    return metrics


@pytest.mark.parametrize("adapter", ["lora", "loraxs", "loraxs_random", "lorasb", "full"])
def test_each_adapter_trains_one_step(adapter, tiny_model_dir, tmp_path):
    m = _one_step([*tiny_overrides(tiny_model_dir, tmp_path), f"adapter={adapter}", "rank=4"], tmp_path)
    if adapter in ("loraxs", "loraxs_random", "lorasb"):
        assert m["trainable"]["adapter"] == 2 * 4 * 16  # 2 layers x 4 modules x r²


@pytest.mark.parametrize("task", [*GLUE_TASKS, "toy_sentiment"])
def test_each_task_trains_one_step(task, tiny_model_dir, tiny_glue_dir, tmp_path):
    glue = tiny_glue_dir if task != "toy_sentiment" else None
    m = _one_step([*tiny_overrides(tiny_model_dir, tmp_path, glue), f"task={task}", "rank=2"], tmp_path)
    main = compose([f"task={task}"]).task.main_metric
    assert main in m["evals"][0]


@pytest.mark.parametrize("model", options("model"))
def test_each_model_option_composes_and_trains_with_a_tiny_stand_in(
    model, tiny_model_dir, tiny_llama_dir, tiny_gpt2_dir, tiny_deberta_dir, tmp_path
):
    cfg = compose([f"model={model}"])
    if model.startswith("gpt2"):  # Conv1D attention, language modelling
        assert list(cfg.model.target_modules) == ["attn.c_attn", "attn.c_proj"] and cfg.model.kind == "decoder"
        over = [o for o in lm_overrides(tiny_gpt2_dir, tmp_path) if not o.startswith(("model=", "model.name="))]
        m = _one_step([f"model={model}", *over, "rank=2"], tmp_path)
        assert m["trainable"]["adapter"] == 2 * 2 * 4  # 2 layers x (c_attn, c_proj) x r²
    elif model.startswith("deberta"):  # query_proj / value_proj, the ContextPooler head
        assert list(cfg.model.target_modules) == ["query_proj", "value_proj"]
        assert list(cfg.model.modules_to_save) == ["pooler", "classifier"]
        m = _one_step([f"model={model}", *tiny_overrides(tiny_deberta_dir, tmp_path), "rank=2"], tmp_path)
        assert m["trainable"]["adapter"] == 2 * 2 * 4
    elif "q_proj" in cfg.model.target_modules:  # decoders: the seven projections, no head
        assert list(cfg.model.target_modules) == [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
        assert list(cfg.model.modules_to_save) == []
        over = llm_overrides(tiny_llama_dir, tmp_path, write_tiny_math(tmp_path / "m"))
        _one_step([o for o in over if not o.startswith("model=")] + [f"model={model}", "rank=2"], tmp_path)
    else:
        assert cfg.model.target_modules == ["query", "value", "attention.output.dense", "output.dense"]
        _one_step([f"model={model}", *tiny_overrides(tiny_model_dir, tmp_path), "rank=2"], tmp_path)


# CPU stand-ins for what the presets ask of a GPU: fp16/bf16 autocast off, a held-out set the tiny data can give
CPU = ["trainer.mixed_precision=no"]


@pytest.mark.parametrize("experiment", options("experiment"))
def test_each_experiment_file(experiment, tiny_model_dir, tiny_glue_dir, tiny_llama_dir, tmp_path):
    if "math" in experiment:  # decoder recipes (math_*, mini_math) run on a tiny Llama with tiny local data
        over = [f"experiment={experiment}", *llm_overrides(tiny_llama_dir, tmp_path, write_tiny_math(tmp_path / "m"))]
    elif experiment == "mini_lm":  # the tiny decoder and text; the file's data paths replaced
        over = [
            f"experiment={experiment}",
            *[o for o in lm_overrides(tiny_llama_dir, tmp_path) if o != "task=wikitext2"],
        ]
        over += ["task.max_train_chars=null", "task.max_eval_chars=400", "task.eval_context=32"]
    elif experiment == "mini_superglue":
        data = write_tiny_superglue(tmp_path / "sg")
        over = [f"experiment={experiment}", *tiny_overrides(tiny_model_dir, tmp_path, None), "task=superglue_cb"]
        over += [f"task.data_dir={data}"]
    elif experiment == "mini_squad":
        f = write_tiny_squad(tmp_path / "squad.json", version="1.1")
        over = [f"experiment={experiment}", *tiny_overrides(tiny_model_dir, tmp_path), f"task.eval_path={f}"]
        over += ["task.holdout_articles=1", "task.max_length=48", "task.doc_stride=16"]
    elif "commonsense" in experiment:
        over = [f"experiment={experiment}", *commonsense_overrides(tiny_llama_dir, tmp_path, tmp_path / "cs")]
        if experiment == "commonsense_loraxs":
            over += ["task.val_set_size=4", "task.val_every=1"]
    else:
        over = [f"experiment={experiment}", *tiny_overrides(tiny_model_dir, tmp_path, tiny_glue_dir), "task=sst2"]
    over += ["model.dtype=float32", *CPU]
    _one_step(over + (["rank=4"] if experiment != "glue_lora_paper" else []), tmp_path)


@pytest.mark.parametrize("sweep", options("sweep"))
def test_each_sweep_file_composes(sweep):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = hydra_compose("train", overrides=[f"sweep={sweep}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert "rank" in params and "task.lr" in params
    assert cfg.grid.name == sweep and cfg.grid.tasks


@pytest.mark.parametrize("logger", ["wandb", "none"])
def test_each_logger_option(logger, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    over = [o for o in tiny_overrides(tiny_model_dir, tmp_path) if not o.startswith("logger=")]
    _one_step([*over, f"logger={logger}", "rank=2"], tmp_path)


def test_lorasb_without_warmup_is_a_config_error():
    from loraxs.training import ConfigError, build_spec

    with pytest.raises(
        ConfigError, match=r"adapter=lorasb with adapter.lorasb_lr_rule=warmup needs task.warmup_ratio > 0"
    ):
        build_spec(compose(["adapter=lorasb", "task=rte"]))
    build_spec(compose(["adapter=lorasb", "task=rte", "adapter.lorasb_lr_rule=lr"]))
