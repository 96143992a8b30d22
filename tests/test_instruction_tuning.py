"""Causal-LM tasks on a tiny random Llama: encoding, left-padded generation, training runs, bf16 + accumulation."""

import json
from pathlib import Path

import pytest
import torch
from conftest import commonsense_overrides, llm_overrides, train_run, write_tiny_math

from loraxs.tasks.generation import CausalCollator, encode, generate


def test_loss_only_on_response_tokens(tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    p = tok("the answer is", add_special_tokens=True)["input_ids"]
    item = encode(tok, "the answer is", " 4", max_length=64)
    assert item["labels"][: len(p)] == [-100] * len(p)
    assert item["labels"][len(p) :] == item["input_ids"][len(p) :] and item["input_ids"][-1] == tok.eos_token_id
    assert encode(tok, "the answer is", " 4", 64, train_on_inputs=True)["labels"] == item["input_ids"]
    assert len(encode(tok, "the answer is", " 4 5 6 7", max_length=5)["input_ids"]) == 5
    batch = CausalCollator(tok.pad_token_id)([item, encode(tok, "is", " 4", 64)])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["labels"][1, -1] == -100 and batch["attention_mask"][1, -1] == 0


def test_left_padded_batches_generate_the_same_as_one_by_one(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float64)
    prompts = ["the answer is", "how many eggs does janet sell each day ?", "write a response", "3 4"]
    one = generate(model, tok, prompts, batch_size=1, max_new_tokens=8, progress=False)
    many = generate(model, tok, prompts, batch_size=4, max_new_tokens=8, progress=False)
    assert one == many and all(one)
    assert tok.padding_side == "right"  # restored


def test_metamath_run_writes_predictions_and_accuracy(tiny_llama_dir, tmp_path):
    data = write_tiny_math(tmp_path / "data")
    m = train_run([*llm_overrides(tiny_llama_dir, tmp_path, data), "adapter=loraxs", "rank=4", "adapter.alpha=4"])
    run_dir = Path(m["run_dir"])
    assert set(m["evals"][0]) >= {"gsm8k/accuracy", "math/accuracy"}
    rows = [json.loads(x) for x in (run_dir / "predictions" / "gsm8k_epoch1.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and set(rows[0]) == {"id", "generated", "extracted", "gold", "correct"}
    assert m["evals"][0]["gsm8k/accuracy"] == sum(r["correct"] for r in rows) / 4
    assert m["trainable"]["adapter"] == 2 * 7 * 16  # 2 layers x 7 targets x r²
    assert (run_dir / "adapter" / "loraxs_config.json").is_file()


@pytest.mark.parametrize("adapter", ["lora", "loraxs", "loraxs_random", "lorasb", "full"])
def test_every_adapter_trains_a_decoder_in_bf16_with_accumulation(adapter, tiny_llama_dir, tmp_path):
    data = write_tiny_math(tmp_path / "data")
    over = [
        *llm_overrides(tiny_llama_dir, tmp_path, data),
        f"adapter={adapter}",
        "rank=4",
        "model.dtype=bfloat16",
        "trainer.grad_accum=2",
        "trainer.mixed_precision=bf16",
        "task.max_eval_samples=2",
        "adapter.lorasb_n_samples=3" if adapter == "lorasb" else "seed=0",
    ]
    m = train_run(over)
    assert m["finished"] and m["total_steps"] == 2  # 10 examples, batch 4 -> 3 batches -> 2 optimizer steps
    assert m["last_train_loss"] is not None and m["last_train_loss"] == m["last_train_loss"]


def test_commonsense_run(tiny_llama_dir, tmp_path):
    over = commonsense_overrides(tiny_llama_dir, tmp_path, tmp_path / "cs")
    m = train_run([*over, "adapter=lorasb", "rank=4"])
    assert set(m["evals"][0]) >= {"boolq/accuracy", "winogrande/accuracy", "average/accuracy"}
    rows = (Path(m["run_dir"]) / "predictions" / "winogrande_epoch1.jsonl").read_text().splitlines()
    assert len(rows) == 3


def test_eval_script_on_a_finished_run_and_on_the_base_model(tiny_llama_dir, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    data = write_tiny_math(tmp_path / "data")
    m = train_run([*llm_overrides(tiny_llama_dir, tmp_path, data), "adapter=lora", "rank=4"])
    out = tmp_path / "ev"
    p = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "eval.py"), f"run={m['run_dir']}", f"out={out}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads((out / "metrics.json").read_text())
    # the merged adapter reproduces the training run's last evaluation
    assert got["gsm8k/accuracy"] == m["evals"][-1]["gsm8k/accuracy"]
    assert got["adapter"].endswith(("adapter_best", "adapter")) and got["examples"] == 8
    rows = [json.loads(x) for x in (out / "predictions" / "gsm8k.jsonl").read_text().splitlines()]
    train_rows = [
        json.loads(x) for x in (Path(m["run_dir"]) / "predictions" / "gsm8k_epoch1.jsonl").read_text().splitlines()
    ]
    assert [r["generated"] for r in rows] == [r["generated"] for r in train_rows]
    base = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments" / "eval.py"),
            *llm_overrides(tiny_llama_dir, tmp_path, data),
            f"out={tmp_path / 'base'}",
            "backend=nope",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert base.returncode == 2 and "backend=nope is unknown; valid: hf, vllm" in base.stderr
