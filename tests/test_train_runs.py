"""Behaviour of the training entrypoint: resume, divergence, init_from, metrics, CLI errors, multirun, W&B."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, entrypoint, minilm_dir, shared_data, tiny_overrides, train_run

from loraxs.training import TrainingError

TRAIN = [sys.executable, str(ROOT / "experiments" / "train.py")]


def _run_dir(metrics) -> Path:
    return Path(metrics["run_dir"])


def test_resume_after_kill_gives_identical_metrics(tiny_model_dir, tmp_path):
    base = [
        *tiny_overrides(tiny_model_dir, tmp_path),
        "task.epochs=3",
        "task.max_train_samples=48",
        "rank=4",
        "adapter.dropout=0.1",
    ]
    full = train_run(base)
    with pytest.raises(KeyboardInterrupt):  # killed mid-epoch 2 (6 steps per epoch)
        train_run([*base, "trainer.interrupt_at_step=9"])
    (killed,) = [d for d in (tmp_path / "runs").iterdir() if d != _run_dir(full)]
    assert json.loads((killed / "metrics.json").read_text())["evals"][-1]["epoch"] == 1
    resumed = train_run([*base, f"resume={killed}"])
    assert _run_dir(resumed) == killed
    assert resumed["evals"] == full["evals"]
    assert resumed["best"] == full["best"]
    a = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(_run_dir(full) / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(
    tiny_model_dir, tiny_glue_dir, tmp_path, monkeypatch
):
    from loraxs.tasks.glue import GlueTask

    calls = {"n": 0}
    collate = GlueTask.collate

    def corrupt(self, items):  # calls: 2 training batches, 1 eval batch, then epoch 2's first batch: step 3
        batch = collate(self, items)
        calls["n"] += 1
        if calls["n"] == 4:
            batch["labels"][0] = float("nan")
        return batch

    monkeypatch.setattr(GlueTask, "collate", corrupt)
    over = [
        *tiny_overrides(tiny_model_dir, tmp_path, tiny_glue_dir),
        "task=stsb",
        "task.epochs=3",
        "rank=2",
        "trainer.eval_batch_size=64",
    ]
    with pytest.raises(
        TrainingError,
        match=r"loss became nan at epoch 2, step 3; run stopped\. continue from its last checkpoint "
        r"\(.*checkpoints/last\.pt\) with a lower learning rate: python experiments/train\.py resume=.* task\.lr=<lower>",
    ):
        train_run(over)
    run_dir = next((tmp_path / "runs").iterdir())
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["progress"]["epoch"] == 1
    assert not (run_dir / "adapter").exists()


@pytest.mark.parametrize("with_head", [False, True])
def test_init_from_carries_r_and_the_head_only_when_asked(with_head, tiny_model_dir, tmp_path):
    """Official MNLI → MRPC/RTE/STS-B start: only R is carried over and the head starts fresh;
    init_from_head=true loads the head too."""
    from safetensors.torch import load_file

    src = train_run([*tiny_overrides(tiny_model_dir, tmp_path / "src"), "rank=4", "task.epochs=2"])
    before = load_file(_run_dir(src) / "adapter_best" / "loraxs_adapter.safetensors")
    over = [*tiny_overrides(tiny_model_dir, tmp_path / "dst"), "rank=4", "trainer.max_steps=0"]
    fresh = train_run(over)  # the same run without init_from: its head is the fresh init
    dst = train_run([*over, f"init_from={_run_dir(src)}", f"init_from_head={str(with_head).lower()}"])
    after = load_file(_run_dir(dst) / "adapter" / "loraxs_adapter.safetensors")
    fresh_head = load_file(_run_dir(fresh) / "adapter" / "loraxs_adapter.safetensors")
    assert before.keys() == after.keys()
    heads = [k for k in before if k.startswith(("classifier", "bert.pooler"))]
    assert heads and all(k.endswith(("lora_A", "lora_B", "lora_R")) for k in set(before) - set(heads))
    for k in before:
        expected = before[k] if (k not in heads or with_head) else fresh_head[k]
        assert torch.equal(after[k], expected), k
    assert not torch.equal(before[heads[0]], fresh_head[heads[0]])  # the two heads differ: the test can fail
    log = (_run_dir(dst) / "train.log").read_text()
    assert ("initialised the adapter and the head from" in log) == with_head


@pytest.mark.parametrize("task,metrics", [("cola", ("mcc",)), ("stsb", ("pearson", "spearman"))])
def test_shared_glue_metrics_equal_sklearn_scipy(task, metrics, tiny_model_dir, tmp_path):
    """Real MiniLM features with a (nearly) untrained random head give non-degenerate predictions."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import matthews_corrcoef

    glue = shared_data("glue")
    minilm = minilm_dir()
    over = [
        *tiny_overrides(minilm, tmp_path, glue),
        f"task={task}",
        "rank=4",
        "model.max_rank=384",
        "task.max_train_samples=16",
        "task.max_eval_samples=400",
        "trainer.eval_batch_size=100",
        "task.lr=1e-7",
        "task.head_lr=1e-7",
    ]
    m = train_run(over)
    rows = [json.loads(line) for line in (_run_dir(m) / "predictions" / "validation_epoch1.jsonl").open()]
    assert len(rows) == 400
    y = np.array([r["label"] for r in rows])
    p = np.array([r["prediction"] for r in rows])
    assert len(set(p.tolist())) > 1, "degenerate predictions would make the comparison trivial"
    reference = {
        "mcc": lambda: matthews_corrcoef(y, p),
        "pearson": lambda: pearsonr(p, y)[0],
        "spearman": lambda: spearmanr(p, y)[0],
    }
    for name in metrics:
        assert m["evals"][0][name] == pytest.approx(reference[name](), abs=1e-12)
    assert m["best"][metrics[0]]["epoch"] == 1


def test_run_folder_contents(tiny_model_dir, tmp_path):
    m = train_run([*tiny_overrides(tiny_model_dir, tmp_path), "rank=4", "task.epochs=2"])
    d = _run_dir(m)
    names = {p.name for p in d.iterdir()}
    assert {
        "config.yaml",
        "metrics.json",
        "train.log",
        "adapter",
        "adapter_best",
        "checkpoints",
        "predictions",
    } <= names
    saved = json.loads((d / "metrics.json").read_text())
    head = (32 * 32 + 32) + (32 * 2 + 2)  # pooler + classifier
    assert saved["trainable"] == {"adapter": 2 * 4 * 16, "head": head, "total": 2 * 4 * 16 + head}
    assert [e["epoch"] for e in saved["evals"]] == [1, 2] and saved["wall_time_s"] > 0
    best = max(saved["evals"], key=lambda e: e["accuracy"])
    assert saved["best"]["accuracy"] == {"value": best["accuracy"], "epoch": best["epoch"]}
    assert "rank: 4" in (d / "config.yaml").read_text()


def test_run_folders_are_unique_in_the_same_second(tmp_path):
    from loraxs.training.run_folder import create

    dirs = {create(tmp_path, "same") for _ in range(50)}
    assert len(dirs) == 50


def _cli(args, **kw):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run(TRAIN + args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, **kw)


@pytest.mark.parametrize(
    "arg,message",
    [
        (
            "adapter=nonsense",
            "adapter=nonsense is not a config option; valid: full, lora, lorasb, loraxs, loraxs_random",
        ),
        ("rank=0", "rank=0 is invalid; expected an integer >= 1"),
        ("rank=100000", "rank=100000 exceeds what model minilm_l6 allows; valid: 1..384"),
        ("task.data_dir=/missing", "task.data_dir=/missing does not exist"),
    ],
)
def test_cli_bad_input_one_line_before_loading(arg, message, tmp_path):
    p = _cli([arg, f"paths.output_dir={tmp_path}"])
    assert p.returncode == 2
    lines = [line for line in p.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], p.stderr
    assert not (tmp_path / "runs").exists(), "nothing was created"


def test_multirun_gives_four_run_folders(tiny_model_dir, tmp_path):
    over = [o for o in tiny_overrides(tiny_model_dir, tmp_path) if not o.startswith("rank")]
    p = _cli(["-m", "adapter=lora,loraxs", "rank=4,8", *over])
    assert p.returncode == 0, p.stderr[-2000:]
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 4
    seen = set()
    for d in runs:
        m = json.loads((d / "metrics.json").read_text())
        assert m["finished"] and m["evals"]
        seen.add((m["adapter"], m["rank"]))
    assert seen == {("lora", 4), ("lora", 8), ("loraxs", 4), ("loraxs", 8)}


def test_wandb_init_gets_resolved_config_group_tags_and_offline_mode(tiny_model_dir, tmp_path, monkeypatch):
    import wandb

    calls = {}

    class FakeRun:
        summary: dict = {}

        def log(self, values, step):
            calls.setdefault("logged", []).append((step, values))

        def finish(self):
            calls["finished"] = True

    def fake_init(**kw):
        calls["init"] = kw
        return FakeRun()

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(wandb, "init", fake_init)
    over = [o for o in tiny_overrides(tiny_model_dir, tmp_path) if not o.startswith("logger=")]
    train_run([*over, "logger=wandb", "rank=4"])
    kw = calls["init"]
    assert kw["mode"] == "offline" and kw["group"] == "toy_sentiment-loraxs-r4"
    assert set(kw["tags"]) >= {"toy_sentiment", "loraxs", "r4"}
    assert kw["config"]["rank"] == 4 and kw["config"]["task"]["name"] == "toy_sentiment"
    keys = {k for _, v in calls["logged"] for k in v}
    assert {"train/loss", "train/lr", "eval/accuracy"} <= keys and calls["finished"]
    assert FakeRun.summary["trainable/adapter"] == 128 and "reported/accuracy" in FakeRun.summary
    assert "reported/lr" not in FakeRun.summary
    monkeypatch.setenv("WANDB_MODE", "online")
    train_run([*over, "logger=wandb", "rank=4"])
    assert calls["init"]["mode"] == "online"


def test_two_cpu_processes_share_one_run_and_step_the_schedule_once(tiny_model_dir, tmp_path):
    """torchrun --nproc_per_node 2: one run folder, sharded batches, lr stepped once per optimizer step."""
    over = [o for o in tiny_overrides(tiny_model_dir, tmp_path) if not o.startswith("task.epochs")]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        str(ROOT / "experiments" / "train.py"),
        *over,
        "adapter=lorasb",
        "adapter.lorasb_lr_rule=lr",
        "rank=4",
        "task.epochs=2",
        "task.warmup_ratio=0.0",
        "task.lr=1e-3",
        "task.max_train_samples=32",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    (run_dir,) = list((tmp_path / "runs").iterdir())
    m = json.loads((run_dir / "metrics.json").read_text())
    # 32 examples, batch 8, 2 processes: 2 optimizer steps per epoch, 4 in all
    assert m["total_steps"] == 4 and [(e["epoch"], e["step"]) for e in m["evals"]] == [(1, 2), (2, 4)]
    assert m["evals"][0]["lr"] == pytest.approx(1e-3 * (1 - 2 / 4))  # linear decay, once per optimizer step
    assert m["evals"][1]["lr"] == 0.0
    rows = (run_dir / "predictions" / "validation_epoch2.jsonl").read_text().splitlines()
    assert len(rows) == 16  # gathered from both processes, padding dropped
    assert p.stdout.count("run folder:") == 1


def test_eval_py_on_a_full_fine_tuning_run_reproduces_its_best_dev_metric(tiny_model_dir, tiny_glue_dir, tmp_path):
    """Full fine-tuning keeps its best epoch's model (model_best/) as the adapters keep adapter_best/; eval.py on
    the run evaluates that model, not the base model with a random head, nor the last epoch's."""
    over = [*tiny_overrides(tiny_model_dir, tmp_path, tiny_glue_dir), "task=stsb", "adapter=full", "task.epochs=4"]
    m = train_run([*over, "task.lr=3e-3", "seed=0"])
    best, last = m["reported"], m["evals"][-1]
    assert best["epoch"] != last["epoch"] and best["pearson"] > last["pearson"] + 0.05  # the choice matters here
    out = tmp_path / "ev"
    p = entrypoint("eval.py", f"run={m['run_dir']}", f"out={out}")
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["pearson"] == pytest.approx(best["pearson"], abs=1e-6)
    assert (_run_dir(m) / "model_best" / "config.json").is_file() and (_run_dir(m) / "model" / "config.json").is_file()


def test_every_finished_run_writes_a_peft_folder_of_its_reported_adapter(tiny_model_dir, tmp_path):
    """``adapter_peft/`` holds the best epoch's adapter (not the last epoch's) as standard PEFT LoRA: PEFT loads it
    onto the base model and gives the logits of our own adapter_best."""
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForSequenceClassification

    from loraxs import load_adapter

    m = train_run([*tiny_overrides(tiny_model_dir, tmp_path), "task.epochs=3", "rank=4", "task.lr=5e-3"])
    run_dir = _run_dir(m)
    config = json.loads((run_dir / "adapter_peft" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "SEQ_CLS"
    assert config["base_model_name_or_path"] == str(tiny_model_dir)
    ids = torch.randint(1, 60, (3, 9), generator=torch.Generator().manual_seed(0))

    def base():
        return AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2).eval()

    ours = load_adapter(base(), run_dir / "adapter_best")(input_ids=ids).logits
    theirs = peft.PeftModel.from_pretrained(base(), run_dir / "adapter_peft").eval()(input_ids=ids).logits
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)
    final = load_adapter(base(), run_dir / "adapter")(input_ids=ids).logits
    assert m["reported"]["epoch"] < 3  # this seed and lr peak before the last epoch: the export must pick the best
    assert not torch.allclose(final, theirs, atol=1e-4)
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_the_logged_loss_is_the_mean_over_the_accumulation_window_and_the_processes(tmp_path):
    """torchrun 2 processes x grad_accum 2: the first logged loss is the mean loss of the four micro-batches of
    step 1 (two per process) under the initial model, not the last micro-batch of process 0. LoRA starts at
    B = 0, so the initial model is the base model; dropout is off, so the loss is a function of the batch."""
    import shutil

    from conftest import minilm_dir, spec_of
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

    from loraxs.tasks import build_task
    from loraxs.training.phases import EpochSampler

    model_dir = tmp_path / "bert"
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm_dir() / name).exists():
            shutil.copy(minilm_dir() / name, model_dir / name)
    over = [
        *tiny_overrides(model_dir, tmp_path / "out"),
        "adapter=lora",
        "rank=4",
        "adapter.dropout=0.0",
        "task.batch_size=4",
        "trainer.grad_accum=2",
        "trainer.log_every=1",
        "trainer.max_steps=1",
        "task.max_train_samples=32",
    ]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        str(ROOT / "experiments" / "train.py"),
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    p = subprocess.run([*cmd, *over], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    (run_dir,) = list((tmp_path / "out" / "runs").iterdir())
    logged = json.loads((run_dir / "metrics.json").read_text())["train_loss_windows"]

    spec = spec_of(over)
    task = build_task(spec.task, AutoTokenizer.from_pretrained(model_dir))
    order = EpochSampler(len(task.train), spec.seed).permutation(1)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():  # global batches 0-3: process 0 takes 0 and 2, process 1 takes 1 and 3
        losses = [model(**task.collate([task.train[i] for i in order[4 * b : 4 * b + 4]])).loss for b in range(4)]
    assert logged == [pytest.approx(torch.stack(losses).mean().item(), abs=1e-5)]
    assert abs(logged[0] - losses[2].item()) > 1e-3  # what was logged before: process 0's last micro-batch
