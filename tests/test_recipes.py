"""Every preset is the official recipe: per preset, the official value of each setting and the official file it
comes from, checked against the composed and validated run spec (METHODS.md §3).

Repositories: LoRA-XS = MohammadrezaBanaei/LoRA-XS, LoRA-SB = RaghavSinghal10/lora-sb, LoRA = microsoft/LoRA.
"HF Trainer" = the ``transformers.TrainingArguments`` defaults those scripts leave alone (max_grad_norm 1.0,
seed 42, warm-up ``ceil(ratio · steps)``, AdamW without decay on biases and LayerNorm weights).
"""

from __future__ import annotations

import math

import pytest
from conftest import CONFIGS, compose, spec_of

from loraxs.training import build_spec

LXS_GLUE = "LoRA-XS scripts/run_glue.py, main_glue.py (torch.optim.AdamW default wd; int(0.06 * steps))"
LXS_GLUE_MNLI = "LoRA-XS scripts/run_glue_pretrained.py, main_glue_from_pretrained.py (drops classifier keys)"
LXS_SVD = "LoRA-XS config/reconstruct_config.yaml, utils/svd_utils.py (TruncatedSVD n_iter 10, random_state 42)"
LXS_MATH = "LoRA-XS scripts/run_math_tuning.sh, main_math_tuning.py (lora_alpha = r, fp32 load, --fp16 True)"
LXS_MATH_EVAL = "LoRA-XS instruction_tuning_eval/gsm8k_eval.py, MATH_eval.py (vLLM greedy, stop, 1024 / 2048)"
LXS_CS = "LoRA-XS scripts/run_commonsense_tuning.sh, main_commonsense_tuning.py (Trainer args in the file)"
LXS_CS_EVAL = "LoRA-XS instruction_tuning_eval/commonsense_eval.py (num_beams 4, max_new_tokens 32)"
SB_GLUE = "LoRA-SB train_glue.py argparse defaults (torch.optim.AdamW, no clipping, fp32)"
SB_MATH = "LoRA-SB train_arithmetic.py (AdamW(model.parameters()) -> wd 0.01; bf16 load; Trainer bf16)"
SB_MATH_EVAL = "LoRA-SB instruction_tuning_eval/gsm8k_eval.py, MATH_eval.py (vLLM greedy, stop, 256 / 512)"
SB_CS = "LoRA-SB train_cr.py, utils/data_utils.py (6 x 32 accumulation; indented template)"
SB_CS_EVAL = "LoRA-SB instruction_tuning_eval/commonsense_eval.py (clean template, 32 new tokens)"
SB_GRAD = "LoRA-SB utils/gradient_utils.py, utils/svd_utils.py (svd_lowrank q = r, niter 10, seed 42)"
LORA_NLU = "LoRA examples/NLU/roberta_large_rte.sh (per-GPU batch 8 x 8 GPUs), HF Trainer"
LORA_NLU_BASE = "LoRA examples/NLU/roberta_base_mnli.sh (per-GPU batch 16 x 8 GPUs), HF Trainer"
HF = "HF Trainer defaults"
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BERT_TARGETS = ["query", "value", "attention.output.dense", "output.dense"]
STOP = ["Instruction:", "Instruction", "Response:", "Response"]
MATH_SUBJECTS = [
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
]

# preset (with the task that selects its branch) -> {setting: (official value, source)}
RECIPES: dict[tuple[str, ...], dict[str, tuple[object, str]]] = {
    ("experiment=glue_loraxs", "task=cola"): {
        "model.name": ("roberta_large", LXS_GLUE),
        "adapter.method": ("loraxs", LXS_GLUE),
        "adapter.alpha": (16, LXS_GLUE),
        "adapter.target_modules": (BERT_TARGETS, LXS_GLUE),
        "adapter.svd_backend": ("sklearn", LXS_SVD),
        "adapter.svd_n_iter": (10, LXS_SVD),
        "adapter.seed": (42, LXS_SVD),
        "adapter.r_init_std": (1e-5, "LoRA-XS utils/initialization_utils.py init_module_weights(sigma=0.00001)"),
        "optim.epochs": (10, LXS_GLUE),
        "effective_batch": (32, LXS_GLUE),
        "task.max_length": (128, LXS_GLUE),
        "optim.scheduler": ("linear", LXS_GLUE),
        "optim.warmup_ratio": (0.06, LXS_GLUE),
        "optim.warmup_rounding": ("floor", LXS_GLUE),
        "optim.weight_decay": (0.01, LXS_GLUE),
        "optim.decay_biases_and_norms": (True, LXS_GLUE),
        "optim.max_grad_norm": (1.0, HF),
        "trainer.mixed_precision": ("no", LXS_GLUE),
        "model.dtype": ("float32", LXS_GLUE),
        "task.selection": ("best_epoch", LXS_GLUE),
        "task.eval_every_epoch": (True, LXS_GLUE),
    },
    ("experiment=glue_loraxs", "task=rte"): {
        "optim.epochs": (50, LXS_GLUE_MNLI),
        "effective_batch": (32, LXS_GLUE_MNLI),
        "optim.warmup_ratio": (0.0, LXS_GLUE_MNLI),
        "optim.weight_decay": (0.01, LXS_GLUE_MNLI),
        "init_from_head": (False, LXS_GLUE_MNLI),
        "adapter.svd_backend": ("sklearn", LXS_SVD),
    },
    ("experiment=glue_lorasb", "task=cola"): {
        "model.name": ("roberta_large", SB_GLUE),
        "adapter.method": ("lorasb", SB_GLUE),
        "adapter.alpha": (None, SB_GLUE + " (alpha = r)"),
        "adapter.target_modules": (BERT_TARGETS, "LoRA-SB models.py create_peft_model"),
        "adapter.lorasb_n_samples": (2, "LoRA-SB train_glue.py num_samples=2"),
        "adapter.lorasb_batch_size": (None, "LoRA-SB train_glue.py (the training loader, batch 128)"),
        "adapter.lorasb_lr_rule": ("warmup", "LoRA-SB train_glue.py eff_lr"),
        "adapter.svd_backend": ("torch_lowrank", SB_GRAD),
        "adapter.svd_oversample": (0, SB_GRAD),
        "adapter.svd_n_iter": (10, SB_GRAD),
        "adapter.dropout": (0.0, SB_GLUE),
        "seed": (42, SB_GLUE),
        "optim.epochs": (30, SB_GLUE),
        "effective_batch": (128, SB_GLUE),
        "optim.lr": (1e-3, SB_GLUE),
        "optim.head_lr": (None, SB_GLUE + " (one lr for all)"),
        "task.max_length": (128, SB_GLUE),
        "optim.scheduler": ("linear", SB_GLUE),
        "optim.warmup_ratio": (0.06, SB_GLUE),
        "optim.warmup_rounding": ("floor", SB_GLUE),
        "optim.weight_decay": (0.01, SB_GLUE),
        "optim.max_grad_norm": (None, SB_GLUE),
        "trainer.mixed_precision": ("no", SB_GLUE),
        "model.dtype": ("float32", SB_GLUE),
        "task.selection": ("best_epoch", "LoRA-SB train_eval.py evaluate_glue (max over epochs)"),
    },
    ("experiment=glue_lora_paper", "task=rte"): {
        "model.name": ("roberta_large", LORA_NLU),
        "adapter.method": ("lora", LORA_NLU),
        "adapter.rank": (8, LORA_NLU),
        "adapter.alpha": (16, LORA_NLU),
        "adapter.target_modules": (["query", "value"], "LoRA examples/NLU (lora.Linear on query, value)"),
        "effective_batch": (64, LORA_NLU),
        "optim.epochs": (20, LORA_NLU),
        "optim.lr": (4e-4, LORA_NLU),
        "optim.head_lr": (None, HF),
        "task.max_length": (512, LORA_NLU),
        "optim.weight_decay": (0.1, LORA_NLU),
        "optim.decay_biases_and_norms": (False, HF),
        "optim.warmup_ratio": (0.06, LORA_NLU),
        "optim.warmup_rounding": ("ceil", HF),
        "optim.scheduler": ("linear", HF),
        "optim.max_grad_norm": (1.0, HF),
        "trainer.mixed_precision": ("no", LORA_NLU + " (no --fp16)"),
        "seed": (0, LORA_NLU),
    },
    ("experiment=glue_lora_paper", "task=mnli", "model=roberta_base"): {
        "effective_batch": (128, LORA_NLU_BASE),
        "optim.epochs": (30, LORA_NLU_BASE),
        "optim.lr": (5e-4, LORA_NLU_BASE),
        "task.max_length": (512, LORA_NLU_BASE),
        "adapter.alpha": (16, LORA_NLU_BASE),
    },
    ("experiment=math_loraxs",): {
        "model.name": ("mistral_7b", LXS_MATH),
        "model.dtype": ("float32", LXS_MATH),
        "trainer.mixed_precision": ("fp16", LXS_MATH),
        "adapter.method": ("loraxs", LXS_MATH),
        "adapter.rank": (64, LXS_MATH),
        "adapter.alpha": (64, LXS_MATH),
        "adapter.dropout": (0.0, LXS_MATH),
        "adapter.target_modules": (LLAMA_TARGETS, LXS_MATH),
        "adapter.svd_backend": ("sklearn", LXS_SVD),
        "task.hf_path": ("meta-math/MetaMathQA", LXS_MATH),
        "task.train_split": ("train[:100000]", LXS_MATH),
        "optim.epochs": (2, LXS_MATH),
        "effective_batch": (128, LXS_MATH),
        "optim.lr": (4e-3, LXS_MATH),
        "optim.scheduler": ("cosine", LXS_MATH),
        "optim.warmup_ratio": (0.02, LXS_MATH),
        "optim.warmup_rounding": ("ceil", HF),
        "optim.weight_decay": (0.0, LXS_MATH),
        "optim.max_grad_norm": (1.0, HF),
        "seed": (42, HF),
        "task.max_length": (512, LXS_MATH),
        "task.train_on_inputs": (False, LXS_MATH),
        "gsm8k_tokens": (1024, LXS_MATH_EVAL),
        "math_tokens": (2048, LXS_MATH_EVAL),
        "task.stop": (STOP, LXS_MATH_EVAL),
        "task.num_beams": (1, LXS_MATH_EVAL),
        "task.grader": ("official", LXS_MATH_EVAL),
        "math_set": (("EleutherAI/hendrycks_math", MATH_SUBJECTS), LXS_MATH_EVAL + " on MATH_test.jsonl (5,000)"),
        "task.selection": ("final", LXS_MATH + " (the final model is merged and evaluated)"),
        "task.eval_every_epoch": (False, LXS_MATH),
    },
    ("experiment=math_lorasb",): {
        "model.name": ("mistral_7b", SB_MATH),
        "model.dtype": ("bfloat16", SB_MATH),
        "trainer.mixed_precision": ("bf16", SB_MATH),
        "adapter.method": ("lorasb", SB_MATH),
        "adapter.rank": (96, SB_MATH),
        "adapter.alpha": (None, SB_MATH + " (alpha = r)"),
        "adapter.lorasb_n_samples": (50, SB_MATH),
        "adapter.lorasb_batch_size": (3, SB_MATH + " (eg_bs)"),
        "adapter.lorasb_lr_rule": ("warmup", SB_MATH),
        "adapter.svd_backend": ("torch_lowrank", SB_GRAD),
        "task.train_split": ("train[:50000]", SB_MATH),
        "optim.epochs": (1, SB_MATH),
        "effective_batch": (32, SB_MATH),
        "optim.lr": (1e-4, SB_MATH),
        "optim.scheduler": ("cosine", SB_MATH),
        "optim.warmup_ratio": (0.02, SB_MATH),
        "optim.weight_decay": (0.01, SB_MATH),
        "optim.max_grad_norm": (1.0, HF),
        "seed": (42, SB_MATH),
        "task.max_length": (512, SB_MATH),
        "gsm8k_tokens": (256, SB_MATH_EVAL),
        "math_tokens": (512, SB_MATH_EVAL),
        "task.stop": (STOP, SB_MATH_EVAL),
        "task.grader": ("official", SB_MATH_EVAL),
        "math_set": (("EleutherAI/hendrycks_math", MATH_SUBJECTS), SB_MATH_EVAL + " on MATH_test.jsonl (5,000)"),
        "task.selection": ("final", SB_MATH),
    },
    ("experiment=commonsense_lorasb",): {
        "model.name": ("llama3_2_3b", "LoRA-SB scripts/run_cr.sh"),
        "model.dtype": ("bfloat16", SB_CS),
        "trainer.mixed_precision": ("bf16", SB_CS),
        "adapter.method": ("lorasb", SB_CS),
        "adapter.rank": (96, SB_CS),
        "adapter.alpha": (None, SB_CS + " (alpha = r)"),
        "adapter.dropout": (0.05, SB_CS),
        "adapter.lorasb_n_samples": (170, SB_CS),
        "adapter.lorasb_batch_size": (10, SB_CS + " (eg_bs)"),
        "optim.epochs": (2, SB_CS),
        "effective_batch": (192, SB_CS),
        "optim.lr": (2e-3, SB_CS),
        "optim.scheduler": ("linear", SB_CS),
        "optim.warmup_ratio": (0.02, SB_CS),
        "optim.weight_decay": (0.01, SB_CS),
        "optim.max_grad_norm": (1.0, HF),
        "seed": (42, SB_CS),
        "task.max_length": (256, SB_CS),
        "task.template": ("lorasb", SB_CS),
        "task.max_new_tokens": (32, SB_CS_EVAL),
        "task.selection": ("final", SB_CS),
    },
    ("experiment=commonsense_loraxs",): {
        "model.name": ("llama3_8b", LXS_CS),
        "model.dtype": ("float32", LXS_CS),
        "trainer.mixed_precision": ("fp16", LXS_CS),
        "adapter.method": ("loraxs", LXS_CS),
        "adapter.rank": (32, LXS_CS),
        "adapter.alpha": (64, LXS_CS),
        "adapter.dropout": (0.0, LXS_CS),
        "adapter.svd_backend": ("sklearn", LXS_SVD),
        "optim.epochs": (3, LXS_CS),
        "effective_batch": (64, LXS_CS),
        "optim.lr": (2e-3, LXS_CS),
        "optim.scheduler": ("linear", HF),
        "optim.warmup_steps": (100, LXS_CS),
        "optim.weight_decay": (0.0, LXS_CS),
        "optim.max_grad_norm": (0.5, LXS_CS),
        "seed": (42, HF),
        "task.max_length": (256, LXS_CS),
        "task.template": ("loraxs", LXS_CS),
        "task.val_set_size": (120, LXS_CS),
        "task.val_every": (40, LXS_CS),
        "task.selection": ("val_loss", LXS_CS + " (load_best_model_at_end by eval loss)"),
        "task.num_beams": (4, LXS_CS_EVAL),
        "task.max_new_tokens": (32, LXS_CS_EVAL),
    },
}


def setting(spec, name: str):
    if name == "effective_batch":
        return spec.optim.batch_size * spec.optim.grad_accum
    if name in ("gsm8k_tokens", "math_tokens"):
        return spec.task.eval_sets[name.split("_")[0]].max_new_tokens
    if name == "math_set":
        m = spec.task.eval_sets["math"]
        return m.hf_path, m.hf_name
    value = spec
    for part in name.split("."):
        value = getattr(value, part)
    return value


def test_every_preset_has_a_recipe_row():
    presets = {p.stem for p in (CONFIGS / "experiment").glob("*.yaml") if not p.stem.startswith(("smoke", "mini_"))}
    covered = {o.split("=")[1] for key in RECIPES for o in key if o.startswith("experiment=")}
    assert presets == covered


@pytest.mark.parametrize("preset", list(RECIPES), ids=lambda k: "+".join(o.split("=")[1] for o in k))
def test_preset_equals_the_official_recipe(preset):
    spec = build_spec(compose(list(preset)))  # the data files of the LLM presets need not exist here
    wrong = {
        name: f"{setting(spec, name)!r} != official {value!r} ({source})"
        for name, (value, source) in RECIPES[preset].items()
        if setting(spec, name) != value
    }
    assert not wrong, wrong


def _grid(sweep: str) -> tuple[dict[str, list[str]], object]:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = hydra_compose("train", overrides=[f"sweep={sweep}"], return_hydra_config=True)
    return {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}, cfg


def test_loraxs_grids_are_the_official_grids(tmp_path):
    params, _ = _grid("glue_loraxs_grid")  # LoRA-XS scripts/run_glue.py
    assert params == {
        "rank": ["4", "8", "12", "16", "20", "25"],
        "task.lr": ["1e-4", "5e-4", "1e-3"],
        "task.head_lr": ["5e-4", "1e-3", "5e-3"],
        "seed": ["0", "1", "2", "3", "4"],
    }
    assert math.prod(len(v) for v in params.values()) == 270
    params, cfg = _grid("glue_loraxs_mnli_grid")  # LoRA-XS scripts/run_glue_pretrained.py
    assert params == {
        "rank": ["4", "8", "12", "16", "20", "25"],
        "task.lr": ["6e-4", "1e-3"],
        "task.head_lr": ["6e-4", "1e-3"],
        "seed": ["0", "1", "2", "3", "4"],
    }
    assert math.prod(len(v) for v in params.values()) == 120
    # each run starts from the MNLI adapter of its rank, in the official layout
    assert cfg.init_from.endswith("model_checkpoints/RoBERTa-large/MNLI/rank_16")  # paths.cache_dir, rank 16
    (tmp_path / "RoBERTa-large" / "MNLI" / "rank_12").mkdir(parents=True)
    over = [
        "experiment=glue_loraxs",
        "sweep=glue_loraxs_mnli_grid",
        "task=rte",
        "rank=12",
        f"paths.cache_dir={tmp_path}",
    ]
    spec = spec_of(over)  # validate: the MNLI adapter folder must exist
    assert spec.init_from == f"{tmp_path}/RoBERTa-large/MNLI/rank_12" and not spec.init_from_head
    params, _ = _grid("glue_lorasb_grid")  # LoRA-SB scripts/run_glue.sh learning rates
    assert params["task.lr"] == ["1e-4", "5e-4", "1e-3", "5e-3"]


@pytest.mark.parametrize("task", ["mrpc", "rte", "stsb"])
def test_the_from_pretrained_grid_refuses_the_mnli_started_tasks(task):
    from loraxs.training import ConfigError

    with pytest.raises(
        ConfigError,
        match=rf"sweep=glue_loraxs_grid is the grid of cola, sst2, qnli, mnli, qqp, not task={task}; "
        r"use sweep=glue_loraxs_mnli_grid",
    ):
        build_spec(compose(["experiment=glue_loraxs", "sweep=glue_loraxs_grid", f"task={task}"]))
