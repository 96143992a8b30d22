"""Bad input is one line: config values refused by train.py's pre-check (exit 2, one stderr line naming the value,
no output folder), data files refused by their loaders with the file and record or line, and a run whose data
is bad stops before its model loads with one line and leaves its folder marked failed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
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
    ("model=smollm2_135m task=sst2", "task=sst2 trains a sequence classifier and needs an encoder model"),
    ("task=metamath", "task=metamath trains a causal LM and needs a decoder model; model=minilm_l6"),
    ("task=wikitext2", "task=wikitext2 trains a causal LM and needs a decoder model"),
    ("model=smollm2_135m task=squad_v1", "task=squad_v1 trains a span (question answering) head and needs an encoder"),
    ("model=smollm2_135m task=superglue_copa", "task=superglue_copa trains a multiple-choice classifier and needs an"),
    (
        "task=superglue_cb task.layout=cbx",
        "task.layout='cbx' is invalid; valid: boolq, cb, copa, multirc, rte, wic, wsc",
    ),
    ("task=superglue_cb task.data_dir=/nonexistent", "task.data_dir=/nonexistent does not exist"),
    ("task=squad_v1 task.eval_path=/nonexistent.json", "task.eval_path=/nonexistent.json does not exist"),
    ("task=squad_v2 task.version=3.0", "task.version=3.0 is invalid; valid: 1.1, 2.0"),
    ("task=squad_v2 task.version=v2", "task.version='v2' is invalid; valid: 1.1, 2.0"),
    ("model=smollm2_135m task=wikitext2 task.stride=0", "task.stride=0 is invalid; expected >= 1"),
    ("model=smollm2_135m task=enwik8 task.data_file=/nonexistent", "task.data_file=/nonexistent does not exist"),
    (
        f"model=smollm2_135m task=text8 task.data_file={ROOT / 'README.md'}",
        "needs task.split_chars=[train, valid, test]",
    ),
    ("model=smollm2_135m task=wikitext2 task.bpc_unit=word", "task.bpc_unit='word' is invalid; valid: char, byte"),
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


# ---------------------------------------------------------------------------------------------- output folders
def _output_case(kind: str, tmp_path: Path) -> tuple[str, str]:
    """(override, expected line) for a bad output or cache folder; the files it names are created here."""
    afile = tmp_path / "a_file"
    afile.write_text("keep me\n")
    if kind == "output_dir_is_a_file":
        return f"paths.output_dir={afile}", f"paths.output_dir={afile} is a file; give a folder"
    if kind == "output_dir_below_a_file":
        return f"paths.output_dir={afile}/runs", f"paths.output_dir={afile}/runs cannot be created: {afile} is a file"
    if kind == "cache_dir_is_a_file":
        return f"paths.cache_dir={afile}", f"paths.cache_dir={afile} is a file"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["output_dir_is_a_file", "output_dir_below_a_file", "cache_dir_is_a_file"])
def test_bad_output_folder_is_one_line_and_leaves_the_file(kind, entry, tmp_path, capsys):
    override, expected = _output_case(kind, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        entry.precheck([override])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {expected}"), lines
    assert (tmp_path / "a_file").read_text() == "keep me\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_output_folder_is_one_line(entry, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    with pytest.raises(SystemExit):
        entry.precheck([f"paths.output_dir={ro}/out"])
    assert (
        capsys.readouterr().err.strip()
        == f"error: paths.output_dir={ro}/out is not writable by this user ({ro} is read-only)"
    )


# ---------------------------------------------------------------------------------------------- adapter folders
def _saved_adapter(folder: Path, method: str = "loraxs", compact: bool = False, seed: int = 0) -> Path:
    from conftest import BERT_TARGETS, tiny_bert

    from loraxs import AdapterConfig, inject_adapters, save_adapter

    model = tiny_bert(seed=seed)
    inject_adapters(
        model, AdapterConfig(method=method, rank=2, target_modules=BERT_TARGETS, modules_to_save=["classifier"])
    )
    return save_adapter(model, folder, compact=compact)


def _break_adapter(folder: Path, kind: str) -> tuple[Path, str]:
    """Damage a saved adapter folder; (the folder to load, the expected message)."""
    cfg, weights = folder / "loraxs_config.json", folder / "loraxs_adapter.safetensors"
    if kind == "missing_folder":
        return folder / "nope", f"no adapter at {folder / 'nope'}: not a folder"
    if kind == "empty_folder":
        (folder.parent / "empty").mkdir()
        return folder.parent / "empty", "loraxs_config.json is missing"
    if kind == "config_not_json":
        cfg.write_text("{not json")
        return folder, f"{cfg} is not valid JSON"
    if kind == "config_a_list":
        cfg.write_text("[1, 2]")
        return folder, f"{cfg} holds a JSON list, not an adapter config object"
    if kind == "config_not_utf8":
        cfg.write_bytes(b"\xff\xfe{")
        return folder, f"{cfg} is not valid JSON"
    if kind == "peft_config":
        cfg.write_text(json.dumps({"peft_type": "LORA", "r": 2}))
        return folder, f"{cfg} is not a loraxs-adapter config (a PEFT folder: load it with peft.PeftModel)"
    if kind == "future_version":
        record = json.loads(cfg.read_text())
        cfg.write_text(json.dumps({**record, "version": 99}))
        return folder, "unsupported format version 99; this library reads 1"
    if kind == "weights_missing":
        weights.unlink()
        return folder, f"no adapter weights at {weights}"
    if kind == "weights_truncated":
        weights.write_bytes(weights.read_bytes()[:-64])
        return folder, f"{weights} does not match loraxs_config.json (SHA-256 differs): the file is truncated"
    if kind == "weights_empty":
        weights.write_bytes(b"")
        return folder, "SHA-256 differs"
    if kind == "weights_from_another_save":
        other = _saved_adapter(folder.parent / "other", seed=3)
        weights.write_bytes((other / "loraxs_adapter.safetensors").read_bytes())
        return folder, "SHA-256 differs"
    raise AssertionError(kind)


ADAPTER_CASES = [
    "missing_folder",
    "empty_folder",
    "config_not_json",
    "config_a_list",
    "config_not_utf8",
    "peft_config",
    "future_version",
    "weights_missing",
    "weights_truncated",
    "weights_empty",
    "weights_from_another_save",
]


@pytest.mark.parametrize("kind", ADAPTER_CASES)
def test_bad_adapter_folder_is_one_line_and_left_as_it_was(kind, tmp_path):
    from conftest import tiny_bert

    from loraxs import load_adapter

    folder, expected = _break_adapter(_saved_adapter(tmp_path / "a"), kind)
    before = {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else None
    model = tiny_bert(seed=0)
    with pytest.raises(ValueError) as info:
        load_adapter(model, folder)
    message = str(info.value)
    assert "\n" not in message and expected in message, message
    after = {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else None
    assert after == before


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("other_architecture", "was saved for 8 adapter modules that differ from this model's 4"),
        ("other_base_weights", "is a compact LoRA-XS adapter for other base weights"),
        ("wrong_tensor_shape", "has shape (2, 3), the model expects (2, 2)"),
        ("missing_tensor", "is missing from loraxs_adapter.safetensors"),
        ("foreign_head_tensor", "head tensor bert.pooler.extra names no parameter of BertForSequenceClassification"),
    ],
)
def test_adapter_that_does_not_fit_the_model_is_one_line(kind, expected, tmp_path):
    """Intact files that do not fit the model (re-hashed after editing, so only the fit is wrong)."""
    import hashlib

    from conftest import tiny_bert
    from safetensors.torch import load_file, save_file

    from loraxs import load_adapter

    folder = _saved_adapter(tmp_path / "a", compact=kind == "other_base_weights")
    model = tiny_bert(
        seed=1 if kind == "other_base_weights" else 0,
        **({"num_hidden_layers": 1} if kind == "other_architecture" else {}),
    )
    weights = folder / "loraxs_adapter.safetensors"
    tensors = load_file(weights)
    name = next(k for k in tensors if k.endswith("lora_R"))
    if kind == "wrong_tensor_shape":
        tensors[name] = torch.zeros(2, 3)
    elif kind == "missing_tensor":
        del tensors[name]
    elif kind == "foreign_head_tensor":
        tensors["bert.pooler.extra"] = torch.zeros(2)
    if kind in ("wrong_tensor_shape", "missing_tensor", "foreign_head_tensor"):
        save_file(tensors, weights)
        record = json.loads((folder / "loraxs_config.json").read_text())
        record["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
        (folder / "loraxs_config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError) as info:
        load_adapter(model, folder)
    assert "\n" not in str(info.value) and expected in str(info.value), str(info.value)


def test_eval_with_a_broken_adapter_stops_before_the_model_loads(tiny_model_dir, tmp_path):
    folder, expected = _break_adapter(_saved_adapter(tmp_path / "a"), "weights_truncated")
    out = tmp_path / "eval"
    p = entrypoint(
        "eval.py", f"adapter_dir={folder}", f"out={out}", *tiny_overrides(tiny_model_dir, tmp_path / "o"), "rank=2"
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    (line,) = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert line.startswith(f"error: {expected}")
    assert "trainable parameters" not in p.stderr and not out.exists()  # stopped before the model loaded


def test_eval_never_writes_over_another_evaluation(entry, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    p = entrypoint("eval.py", f"out={out}", "trainer.progress=false")
    assert (
        p.returncode == 2
        and p.stderr.strip() == f"error: out={out} already holds an evaluation (metrics.json); give a new folder"
    )
    assert (out / "metrics.json").read_text() == "{}"


def test_init_from_a_broken_adapter_is_refused_by_the_pre_check(entry, tmp_path, capsys):
    folder, _ = _break_adapter(_saved_adapter(tmp_path / "run" / "adapter_best"), "weights_truncated")
    with pytest.raises(SystemExit) as exit_info:
        entry.precheck([f"init_from={tmp_path / 'run'}", f"paths.output_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err.strip()
    assert (
        exit_info.value.code == 2
        and err.startswith(f"error: init_from={tmp_path / 'run'}: {folder}")
        and "\n" not in err
    )
    assert "SHA-256 differs" in err and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- checkpoint files
def _checkpoint_case(path: Path, kind: str, model, opt, sched) -> str:
    from loraxs.training import checkpoint

    checkpoint.save(path, model, opt, sched, {"epoch": 1})
    if kind == "empty":
        path.write_bytes(b"")
        return "is unreadable (EOFError); it may be truncated"
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:200])
        return "is unreadable"
    if kind == "pickled_code":
        import pickle

        class Evil:
            def __reduce__(self):
                return (os.system, ("echo pwned",))

        path.write_bytes(pickle.dumps(Evil()))
        return "is unreadable (UnpicklingError)"
    if kind == "a_tensor":
        torch.save(torch.zeros(3), path)
        return "is not a checkpoint of this library (expected the keys model, optimizer, scheduler, progress; found Tensor)"
    if kind == "missing_keys":
        torch.save({"model": {}}, path)
        return "found ['model']"
    if kind == "foreign_tensors":
        payload = torch.load(path, weights_only=True)
        payload["model"]["encoder.extra.lora_R"] = torch.zeros(2, 2)
        torch.save(payload, path)
        return "holds tensors ['encoder.extra.lora_R'] this model lacks"
    if kind == "wrong_shape":
        payload = torch.load(path, weights_only=True)
        name = next(iter(payload["model"]))
        payload["model"][name] = torch.zeros(7, 7)
        torch.save(payload, path)
        return f"{name} has shape (7, 7), the model"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["empty", "truncated", "pickled_code", "a_tensor", "missing_keys", "foreign_tensors", "wrong_shape"]
)
def test_bad_checkpoint_is_one_line_and_left_as_it_was(kind, tmp_path):
    from conftest import BERT_TARGETS, tiny_bert

    from loraxs import AdapterConfig, inject_adapters
    from loraxs.training import TrainingError, checkpoint

    model = tiny_bert(seed=0)
    inject_adapters(
        model, AdapterConfig(method="loraxs", rank=2, target_modules=BERT_TARGETS, modules_to_save=["classifier"])
    )
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    path = tmp_path / "last.pt"
    expected = _checkpoint_case(path, kind, model, opt, sched)
    before = path.read_bytes()
    with pytest.raises(TrainingError) as info:
        checkpoint.load(path, model, opt, sched)
    assert "\n" not in str(info.value) and expected in str(info.value), str(info.value)
    assert path.read_bytes() == before


# ---------------------------------------------------------------------------------------------- no Hub
@pytest.mark.parametrize(
    "reader,expected",
    [
        ("train", "; set task.train_path=<a JSON/JSONL file with query/response records>"),
        ("gsm8k", "; set task.eval_sets.gsm8k.path=<a local JSON/JSONL file>"),
        ("math", "; set task.eval_sets.math.path=<a local JSON/JSONL file>"),
    ],
)
def test_without_the_hub_a_math_run_names_its_own_key(reader, expected, monkeypatch):
    """The Hub unreachable (simulated: no network in tests): the hint names the math task's key, not GLUE's."""
    import datasets
    from conftest import spec_of

    from loraxs.tasks.math import load_eval_rows, load_train_rows

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    task = spec_of(["model=smollm2_135m", "task=metamath"]).task
    with pytest.raises(RuntimeError) as info:
        load_train_rows(task) if reader == "train" else load_eval_rows(reader, task.eval_sets[reader], 4)
    message = str(info.value)
    assert "\n" not in message and message.endswith(expected) and "GLUE" not in message, message
    assert message.startswith("could not load ") and "from the Hugging Face Hub (ConnectionError: " in message


def test_a_commonsense_run_without_its_test_files_names_task_test_dir(entry, tmp_path, capsys):
    train = tmp_path / "train.json"
    train.write_text(json.dumps([{"instruction": "i", "input": "", "output": "o"}]))
    with pytest.raises(SystemExit):
        entry.precheck(
            ["model=smollm2_135m", "task=commonsense", f"task.train_path={train}", f"task.test_dir={tmp_path}"]
        )
    assert capsys.readouterr().err.strip() == (
        f"error: task.test_dir={tmp_path}: no test file for boolq in {tmp_path / 'boolq'} (expected test.json)"
    )


def test_bad_superglue_and_squad_files_stop_in_one_line(tiny_model_dir, tmp_path):
    """A JSONL line that is not JSON, a CB label outside its classes, a SQuAD file of another shape: one line
    naming the file (and line or record), exit 1."""
    from conftest import write_tiny_superglue

    sg = write_tiny_superglue(tmp_path / "sg")
    (sg / "CB" / "train.jsonl").write_text('{"premise": "a", "hypothesis": "b", "label": "neutral"}\n{oops\n')
    (sg / "RTE" / "val.jsonl").write_text('{"premise": "a", "hypothesis": "b", "label": "maybe"}\n')
    squad = tmp_path / "squad.json"
    squad.write_text('[{"question": "q"}]')
    base = [*tiny_overrides(tiny_model_dir, tmp_path / "out"), "rank=2"]
    cases = [
        (["task=superglue_cb", f"task.data_dir={sg}"], f"error: {sg / 'CB' / 'train.jsonl'}:2: not JSON"),
        (["task=superglue_rte", f"task.data_dir={sg}"], f"error: {sg / 'RTE' / 'val.jsonl'} record 1: label 'maybe'"),
        (["task=squad_v1", f"task.eval_path={squad}", f"task.train_path={squad}"], f"error: {squad}: not a SQuAD JSON"),
    ]
    for over, expected in cases:
        p = entrypoint("train.py", *base, *over)
        errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
        assert p.returncode == 1 and len(errors) == 1 and errors[0].startswith(expected), p.stderr[-800:]
        assert "Traceback" not in p.stderr
