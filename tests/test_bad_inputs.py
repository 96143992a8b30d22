"""Bad input is one line: config values refused by train.py's pre-check (exit 2, one stderr line naming the value,
no output folder), data files refused by their loaders with the file and record or line, and a run whose data
is bad stops before its model loads with one line and leaves its folder marked failed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, entrypoint, tiny_overrides, write_tiny_commonsense, write_tiny_glue

TRAIN = ROOT / "experiments" / "train.py"


@pytest.fixture(scope="module")
def entry():
    spec = importlib.util.spec_from_file_location("train_entry", TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# (overrides, what the one line must contain)
CONFIG_CASES = [
    ("rank=0", "rank=0 is invalid; expected an integer >= 1"),
    ("rank=-1", "rank=-1 is invalid"),
    ("rank=abc", "rank='abc' is invalid; expected an integer"),
    ("seed=-1", "seed=-1 is invalid"),
    ("seed=1.5", "seed=1.5 is invalid"),
    ("task.lr=-1", "task.lr=-1.0 is invalid; expected > 0"),
    ("task.lr=0", "task.lr=0.0 is invalid"),
    ("task.lr=abc", "task.lr='abc' is invalid; expected a number"),
    ("task.head_lr=-1", "task.head_lr=-1.0 is invalid"),
    ("task.epochs=0", "task.epochs=0 is invalid; expected >= 1"),
    ("task.epochs=1.5", "task.epochs=1.5 is invalid; expected an integer"),
    ("task.batch_size=0", "task.batch_size=0 is invalid"),
    ("task.warmup_ratio=1.5", "task.warmup_ratio=1.5 is invalid; expected <= 1"),
    ("task.warmup_ratio=-0.1", "task.warmup_ratio=-0.1 is invalid"),
    ("task.max_length=0", "task.max_length=0 is invalid"),
    ("task.max_train_samples=-5", "task.max_train_samples=-5 is invalid"),
    ("task.max_eval_samples=0", "task.max_eval_samples=0 is invalid"),
    ("task.main_metric=nonsense", "task.main_metric='nonsense' is not a metric task=toy_sentiment reports; valid: "),
    ("task=mnli task.main_metric=accuracy", "valid: matched/accuracy, mismatched/accuracy"),
    ("task.selection=whatever", "task.selection='whatever' is invalid; valid: best_epoch, final, val_loss"),
    ("task.scheduler=exp", "task.scheduler='exp' is invalid; valid: linear, cosine, constant"),
    ("trainer.max_grad_norm=-1", "trainer.max_grad_norm=-1.0 is invalid; expected > 0"),
    ("trainer.max_grad_norm=0", "trainer.max_grad_norm=0.0 is invalid"),
    ("trainer.grad_accum=0", "trainer.grad_accum=0 is invalid"),
    ("trainer.weight_decay=-0.1", "trainer.weight_decay=-0.1 is invalid"),
    ("trainer.mixed_precision=fp8", "trainer.mixed_precision='fp8' is invalid; valid: auto, no, bf16, fp16"),
    ("trainer.log_every=0", "trainer.log_every=0 is invalid"),
    ("trainer.max_steps=-1", "trainer.max_steps=-1 is invalid; expected >= 0"),
    ("trainer.eval_batch_size=0", "trainer.eval_batch_size=0 is invalid"),
    ("trainer.checkpoint_every=-1", "trainer.checkpoint_every=-1 is invalid"),
    ("trainer.threads=-1", "trainer.threads=-1 is invalid"),
    ("adapter.alpha=0", "alpha must be > 0"),
    ("adapter.alpha=-2", "got -2"),
    ("adapter.dropout=1.5", "dropout must be in [0, 1), got 1.5"),
    ("adapter.svd_backend=qr", "unknown svd_backend 'qr'; valid: krylov"),
    ("adapter.svd_n_iter=-1", "svd_n_iter and svd_oversample must be >= 0, got -1"),
    ("adapter=lorasb adapter.lorasb_n_samples=0", "lorasb_n_samples must be >= 1, got 0"),
    ("adapter=lorasb adapter.lorasb_lr_rule=x", "unknown lorasb_lr_rule 'x'; valid: warmup"),
    ("adapter=lorasb adapter.lorasb_batch_size=0", "lorasb_batch_size must be >= 1 or None, got 0"),
    ("adapter.rank=4", "adapter.rank=4 disagrees with rank=16; the rank is set once"),
    ("model.dtype=float8", "model.dtype='float8' is invalid; valid: float32, bfloat16, float16"),
    ("model.max_rank=0", "model.max_rank=0 is invalid"),
    ("model.name_or_path=/nonexistent/model", "model.name_or_path=/nonexistent/model does not exist"),
    ("+trainer.max_step=1", "trainer.max_step is not a config key (a typo, or added with + but read by nothing)"),
    ("trainer.max_stpes=1", "trainer.max_stpes is not a config key (misspelt?); valid keys of trainer: "),
    ("task=nonexistent", "task=nonexistent is not a config option; valid: cola, "),
    ("adapter=nonexistent", "adapter=nonexistent is not a config option; valid: full, lora"),
    ("model=nonexistent", "model=nonexistent is not a config option"),
    ("experiment=nope", "experiment=nope is not a config option"),
    ("logger=nope", "logger=nope is not a config option; valid: none, wandb"),
    ("task=sst2 task.data_dir=/nonexistent", "task.data_dir=/nonexistent does not exist"),
    ("resume=null init_from=/nonexistent", "init_from=/nonexistent is not a folder"),
    (
        "model=smollm2_135m task=metamath task.train_path=/nonexistent.jsonl",
        "task.train_path=/nonexistent.jsonl does not exist",
    ),
    (
        "model=smollm2_135m task=metamath task.grader=strict",
        "task.grader='strict' is invalid; valid: official, lenient",
    ),
    ("model=smollm2_135m task=metamath task.num_beams=0", "task.num_beams=0 is invalid"),
    (
        "model=smollm2_135m task=metamath task.eval_sets.gsm8k.max_new_tokens=0",
        "task.eval_sets.gsm8k.max_new_tokens=0 is invalid",
    ),
    (
        "model=smollm2_135m task=metamath task.selection=best_epoch",
        "task.selection=best_epoch would pick the epoch by test-set",
    ),
    (
        "model=smollm2_135m task=commonsense task.template=fancy",
        "task.template='fancy' is invalid; valid: clean, lorasb, loraxs",
    ),
    ("task=cola sweep=glue_loraxs_mnli_grid", "is the grid of"),
    ("adapter=choice(lora,nope)", "adapter=nope is not a config option"),
    ("experiment=glob(zzz*)", "matches no option of experiment"),
    ("rank=[1,2", "cannot parse the overrides"),
    ("model=smollm2_135m task=sst2", "task=sst2 trains a sequence classifier (GLUE) and needs an encoder model"),
    ("task=metamath", "task=metamath trains a causal LM that generates its answers and needs a decoder model"),
    ("model.kind=transformer", "model.kind='transformer' is invalid; valid: encoder, decoder"),
]


@pytest.mark.parametrize("overrides,expected", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_value_is_one_line_before_anything_loads(overrides, expected, entry, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        entry.precheck([*overrides.split(" "), f"paths.output_dir={out}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0]
    assert not out.exists()  # nothing written for a config error


def _glue(tmp_path: Path, text: str | bytes, stem: str = "train") -> Path:
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    for s in ("train", "dev"):
        (folder / f"{s}.tsv").write_text("sentence\tlabel\nfine\t1\nbad\t0\n")
    path = folder / f"{stem}.tsv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


GLUE_CASES = [
    ("", "no examples (the file is empty or holds only its header)"),
    ("sentence\tlabel\n", "no examples"),
    ("text\tlabel\nfine\t1\n", "header lacks columns ['sentence']"),
    ("sentence\tlabel\nfine\n", ":2: expected at least 2 tab-separated columns, found 1"),
    ("sentence\tlabel\nfine\tpositive\n", ":2: label 'positive' is not an integer class id"),
    ("sentence\tlabel\nfine\t3\n", ":2: label '3' is not a class id (0 or 1)"),
    (b"sentence\tlabel\nfa\xefn\xff\t1\n", "not UTF-8 text"),
]


@pytest.mark.parametrize("text,expected", GLUE_CASES, ids=[f"glue{i}" for i in range(len(GLUE_CASES))])
def test_bad_glue_file_names_file_line_and_value(text, expected, tmp_path):
    from loraxs.tasks.glue import LAYOUTS, read_tsv

    path = _glue(tmp_path, text)
    with pytest.raises(ValueError) as e:
        read_tsv(path, LAYOUTS["sst2"])
    assert str(e.value).startswith(str(path)) and expected in str(e.value) and "\n" not in str(e.value)


def test_a_byte_order_mark_is_fine(tmp_path):
    """The standard GLUE download's MRPC files start with a UTF-8 BOM."""
    from loraxs.tasks.glue import LAYOUTS, read_tsv

    path = _glue(tmp_path, "\ufeffsentence\tlabel\nfine\t1\n".encode())
    assert read_tsv(path, LAYOUTS["sst2"]) == [{"sentence": "fine", "label": 1, "idx": 0}]


JSON_CASES = [
    ("", "no records (the file is empty or an empty list)"),
    ("[]", "no records"),
    ('{"query": "q", "response": "r"}\n{"query": "q",\n', ":2: not a JSON object per line (JSONL)"),
    ('[{"query": "q", "response": "r"},', ":1: not valid JSON"),
    ("[1, 2]", "record 1 is a JSON int, not an object"),
    ('{"question": "q"}\n', "record 1: training record has neither query/response nor GSM8K question/answer"),
    ('{"question": "q", "answer": "no final line"}\n', "record 1: training record has neither"),
]


@pytest.mark.parametrize("text,expected", JSON_CASES, ids=[f"math{i}" for i in range(len(JSON_CASES))])
def test_bad_math_training_file_names_file_and_record(text, expected, tmp_path):
    from loraxs.tasks.math import load_train_rows

    path = tmp_path / "train.jsonl"
    path.write_text(text)
    spec = type("S", (), {"train_path": str(path), "max_train_samples": None})()
    with pytest.raises(ValueError) as e:
        load_train_rows(spec)
    assert str(e.value).startswith(str(path)) and expected in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "records,expected",
    [
        ([{"instruction": "i", "input": ""}], "record 1 lacks the field(s) output; it has instruction, input"),
        ("not json", "not a JSON object per line"),
        ([], "no records"),
    ],
    ids=["missing-output", "malformed", "empty"],
)
def test_bad_commonsense_training_file(records, expected, tmp_path):
    from loraxs.tasks.commonsense import load_train

    (tmp_path / "boolq").mkdir()
    path = tmp_path / "boolq" / "train.json"
    path.write_text(records if isinstance(records, str) else json.dumps(records))
    with pytest.raises(ValueError) as e:
        load_train(tmp_path)
    assert str(e.value).startswith(str(path)) and expected in str(e.value)


def test_prompts_that_fill_max_length_leave_nothing_to_train_on(tiny_llama_dir):
    from transformers import AutoTokenizer

    from loraxs.tasks.generation import IGNORE, encode, keep_supervised

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    long, short = encode(tok, "word " * 40, " answer", 16), encode(tok, "q", " answer", 16)
    assert all(x == IGNORE for x in long["labels"]) and any(x != IGNORE for x in short["labels"])
    assert keep_supervised([long, short], "train.jsonl", 16) == [short]
    with pytest.raises(ValueError, match=r"train.jsonl: every prompt fills task.max_length=16 tokens"):
        keep_supervised([long, long], "train.jsonl", 16)


def test_a_run_with_a_bad_data_file_stops_in_one_line_and_marks_its_folder_failed(tiny_model_dir, tmp_path):
    glue = write_tiny_glue(tmp_path / "glue")
    (glue / "SST-2" / "train.tsv").write_text("sentence\tlabel\nfine\t1\nbad\tmaybe\n")
    p = entrypoint("train.py", *tiny_overrides(tiny_model_dir, tmp_path / "out", glue), "task=sst2", "rank=2")
    assert p.returncode == 1
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {glue / 'SST-2' / 'train.tsv'}:3: label 'maybe' is not an integer class id"]
    assert "Traceback" not in p.stderr
    (run,) = (tmp_path / "out" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "label 'maybe'" in metrics["error"]
    log = (run / "train.log").read_text()
    assert "label 'maybe'" in log and "trainable parameters" not in log  # stopped before the model loaded


def test_a_commonsense_run_with_a_record_lacking_its_answer(tiny_llama_dir, tmp_path):
    from conftest import commonsense_overrides

    over = commonsense_overrides(tiny_llama_dir, tmp_path / "out", tmp_path / "cs")
    _, test = write_tiny_commonsense(tmp_path / "cs")
    bad = test / "winogrande" / "test.json"
    bad.write_text(json.dumps([{"instruction": "i", "input": "", "output": "o"}]))
    p = entrypoint("train.py", *over, "rank=2", "trainer.mixed_precision=no")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {bad}: record 1 lacks the field(s) answer; it has instruction, input, output"]


def test_the_config_check_imports_no_torch():
    """A bad value is refused before torch (seconds to import) is even loaded."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('t', {str(TRAIN)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "try:\n    m.precheck(['task.lr=-1'])\nexcept SystemExit as e:\n    print(e.code, 'torch' in sys.modules)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.stdout.split() == ["2", "False"], p.stderr[-1500:]
    assert p.stderr.strip() == "error: task.lr=-1.0 is invalid; expected > 0"


def test_the_mnli_hint_names_the_files_it_checks(entry, tmp_path, capsys):
    (tmp_path / "MNLI").mkdir()
    (tmp_path / "MNLI" / "train.tsv").write_text("x\n")
    with pytest.raises(SystemExit):
        entry.precheck(["task=mnli", f"task.data_dir={tmp_path}"])
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "dev_matched.tsv, dev_mismatched.tsv missing in "
            f"{tmp_path / 'MNLI'} (expected the GLUE layout: MNLI/train.tsv, MNLI/dev_matched.tsv, MNLI/dev_mismatched.tsv)"
        )
    )
