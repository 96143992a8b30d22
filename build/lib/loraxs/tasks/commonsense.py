"""Commonsense reasoning: Commonsense170K → eight benchmarks, in the LLM-Adapters format (METHODS.md §3).

Records are ``{"instruction", "input", "output": "the correct answer is X", "answer": X}``. The clean prompt
(LLM-Adapters, ``template: clean``)::

    Below is an instruction that describes a task. Write a response that appropriately completes the request.

    ### Instruction:
    {instruction}

    ### Response:

(with an ``### Input:`` block and the "paired with an input" preamble when ``input`` is not empty). The training
text is the prompt followed directly by ``output``. ``template: lorasb`` / ``loraxs`` reproduce the official files
byte for byte: their training prompts are triple-quoted strings indented by 12 (LoRA-SB ``utils/data_utils.py``) or
16 spaces (LoRA-XS ``main_commonsense_tuning.py``, with its trailing spaces); LoRA-SB evaluates with the clean prompt
(``instruction_tuning_eval/commonsense_eval.py``), LoRA-XS with its indented one. The prediction is the first word
of the benchmark's answer set found in the generated text (LLM-Adapters' ``extract_answer``); anything else is wrong.
"""

from __future__ import annotations

import bz2
import re
from pathlib import Path
from typing import Any

BENCHMARKS = ("boolq", "piqa", "social_i_qa", "hellaswag", "winogrande", "ARC-Easy", "ARC-Challenge", "openbookqa")
_PATTERNS = {
    "boolq": r"true|false",
    "piqa": r"solution1|solution2",
    "social_i_qa": r"answer1|answer2|answer3|answer4|answer5",  # as the official code (SIQA has 3 answers)
    "ARC-Challenge": r"answer1|answer2|answer3|answer4|answer5",
    "ARC-Easy": r"answer1|answer2|answer3|answer4|answer5",
    "openbookqa": r"answer1|answer2|answer3|answer4|answer5",
    "hellaswag": r"ending1|ending2|ending3|ending4",
    "winogrande": r"option1|option2",
}
_TASK = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request."
)


def _indented(preamble: str, pad: str, with_input: bool) -> str:
    """The official triple-quoted templates: blank lines empty, the other lines indented by ``pad``."""
    blocks = [f"{pad}### Instruction:\n{pad}{{instruction}}"]
    if with_input:
        blocks.append(f"{pad}### Input:\n{pad}{{input}}")
    blocks.append(f"{pad}### Response:\n{pad}")
    return preamble + "\n\n" + "\n\n".join(blocks)


PROMPT = _indented(_TASK, "", False)
PROMPT_WITH_INPUT = _indented(_WITH_INPUT, "", True)
# (no input, with input) per template: training prompts, evaluation prompts
TRAIN_TEMPLATES = {
    "clean": (PROMPT, PROMPT_WITH_INPUT),
    "lorasb": (_indented(_TASK, " " * 12, False), _indented(_WITH_INPUT, " " * 12, True)),
    "loraxs": (_indented(_TASK + "  ", " " * 16, False), _indented(_WITH_INPUT + " ", " " * 16, True)),
}
EVAL_TEMPLATES = {
    "clean": (PROMPT, PROMPT_WITH_INPUT),
    "lorasb": (PROMPT, PROMPT_WITH_INPUT),
    "loraxs": (_indented(_TASK + " ", " " * 16, False), _indented(_WITH_INPUT, " " * 16, True)),
}
HELLASWAG_FILE = "hellaswag_val_full.txt.bz2"


def _check(dataset: str) -> None:
    if dataset not in _PATTERNS:
        raise ValueError(f"unknown commonsense dataset {dataset!r}; valid: {', '.join(BENCHMARKS)}")


def prompt(record: dict[str, Any], template: str = "clean", train: bool = False) -> str:
    """The prompt of one LLM-Adapters record: the evaluation prompt, or with ``train=True`` the training prompt
    (the ``output`` follows it directly)."""
    plain, with_input = (TRAIN_TEMPLATES if train else EVAL_TEMPLATES)[template]
    if record.get("input"):
        return with_input.format(instruction=record["instruction"], input=record["input"])
    return plain.format(instruction=record["instruction"])


def extract_answer(text: str, dataset: str) -> str | None:
    """The first answer word of ``dataset``'s set in ``text`` (e.g. ``answer3``), or None."""
    _check(dataset)
    if text is None:
        return None
    found = re.findall(_PATTERNS[dataset], text.strip())
    return found[0] if found else None


def hellaswag_records(path: str | Path) -> list[dict[str, Any]]:
    """HellaSwag validation rebuilt in the LLM-Adapters template from the 6-lines-per-item text file.

    Each item: ``activity_label: context``, the gold index 0-3, four endings. The instruction follows the
    layout of the other LLM-Adapters test files (blocks separated by a blank line, options on one line)::

        Please choose the correct ending to complete the given sentence: {context}

        Ending1: {e1} Ending2: {e2} Ending3: {e3} Ending4: {e4}

        Answer format: ending1/ending2/ending3/ending4
    """
    opener = bz2.open if str(path).endswith(".bz2") else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise ValueError(f"{path}: {len(lines)} lines is not a multiple of 6 (context, gold, four endings)")
    records = []
    for i in range(0, len(lines), 6):
        context, gold, endings = lines[i], lines[i + 1], lines[i + 2 : i + 6]
        if not gold.strip().isdigit() or not 0 <= int(gold) <= 3:
            raise ValueError(f"{path}:{i + 2}: gold index {gold!r} is not 0-3")
        options = " ".join(f"Ending{k + 1}: {e}" for k, e in enumerate(endings))
        answer = f"ending{int(gold) + 1}"
        records.append(
            {
                "instruction": f"Please choose the correct ending to complete the given sentence: {context}\n\n"
                f"{options}\n\nAnswer format: ending1/ending2/ending3/ending4",
                "input": "",
                "output": f"the correct answer is {answer}",
                "answer": answer,
            }
        )
    return records


def test_file(data_dir: str | Path, dataset: str) -> Path:
    """``<data_dir>/<dataset>/test.json`` (HellaSwag: the bz2 text file is accepted too)."""
    _check(dataset)
    folder = Path(data_dir) / dataset
    for name in ("test.json", HELLASWAG_FILE):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"no test file for {dataset} in {folder} (expected test.json"
        f"{' or ' + HELLASWAG_FILE if dataset == 'hellaswag' else ''})"
    )


def load_test(data_dir: str | Path, dataset: str) -> list[dict[str, Any]]:
    path = test_file(data_dir, dataset)
    if path.name == HELLASWAG_FILE:
        return hellaswag_records(path)
    from .generation import read_records

    return read_records(str(path), require=("instruction", "answer"))


def load_train(path: str | Path) -> list[dict[str, Any]]:
    """Commonsense170K: one LLM-Adapters JSON file, or a folder of ``<task>/train.json`` concatenated in name order."""
    from .generation import read_records

    path = Path(path)
    if path.is_file():
        return read_records(str(path), require=("instruction", "output"))
    files = sorted(path.glob("*/train.json"))
    if not files:
        raise FileNotFoundError(
            f"no training data at {path}: give the commonsense_170k.json file or a folder of <task>/train.json files"
        )
    out: list[dict[str, Any]] = []
    for f in files:
        out.extend(read_records(str(f), require=("instruction", "output")))
    return out


class CommonsenseTask:
    """Commonsense170K training and the eight benchmarks, evaluated by generation (``spec``: a
    ``CommonsenseTaskSpec``)."""

    def __init__(self, spec: Any, tokenizer: Any, train: bool = True) -> None:
        from .generation import CausalCollator, encode, ensure_pad_token, hold_out, keep_supervised

        ensure_pad_token(tokenizer)
        self.spec, self.tokenizer = spec, tokenizer
        rows = load_train(spec.train_path) if train else []
        if spec.max_train_samples and len(rows) > spec.max_train_samples:
            import random  # a seeded subset: the folder form is a concatenation of the tasks

            rows = random.Random(0).sample(rows, int(spec.max_train_samples))
        rows, val = hold_out(rows, spec.val_set_size if train else 0)

        def enc(r: dict) -> dict:
            p = prompt(r, spec.template, train=True)
            return encode(tokenizer, p, r["output"], spec.max_length, spec.train_on_inputs)

        self.train = keep_supervised([enc(r) for r in rows], str(spec.train_path), spec.max_length) if train else []
        self.val = [enc(r) for r in val]
        limit = spec.max_eval_samples
        self.evals = {b: load_test(spec.test_dir, b)[: limit or None] for b in spec.benchmarks}
        self.collate = CausalCollator(tokenizer.pad_token_id)

    def evaluate(self, model, accelerator, batch_size: int, progress: bool = False, generate_fn=None):
        """Accuracy per benchmark (and their average) and per-example records; ``generate_fn(prompts,
        max_new_tokens)`` replaces the transformers generation (e.g. the vLLM backend)."""
        from .generation import complete

        metrics, records = {}, {}
        for name, rows in self.evals.items():
            texts = complete(
                [prompt(r, self.spec.template) for r in rows],
                self.spec.max_new_tokens,
                accelerator=accelerator,
                model=model,
                tokenizer=self.tokenizer,
                batch_size=batch_size,
                progress=progress,
                desc=f"generate {name}",
                num_beams=self.spec.num_beams,
                stop=self.spec.stop,
                generate_fn=generate_fn,
            )
            recs = []
            for i, (r, t) in enumerate(zip(rows, texts)):
                pred = extract_answer(t, name)
                recs.append(
                    {"id": i, "generated": t, "extracted": pred, "gold": r["answer"], "correct": pred == r["answer"]}
                )
            records[name] = recs
            metrics[f"{name}/accuracy"] = sum(x["correct"] for x in recs) / max(1, len(recs))
        metrics["average/accuracy"] = sum(metrics.values()) / max(1, len(self.evals))
        return metrics, records
