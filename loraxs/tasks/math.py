"""Math word problems: MetaMathQA → GSM8K and MATH (METHODS.md §3).

Prompt (both papers)::

    Below is an instruction that describes a task. Write a response that appropriately completes the request.

    ### Instruction:
    {query}

    ### Response: Let's think step by step.

MetaMathQA responses end with ``The answer is: X``. GSM8K gold answers follow ``####`` and are compared
numerically; MATH gold answers are the ``\\boxed{}`` content and are compared by mathematical equivalence with
``math-verify`` (Hugging Face's maintained grader: LaTeX and plain expressions, fractions, tuples, intervals,
sets), not by string match.
"""

from __future__ import annotations

import re
from fractions import Fraction

PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{query}\n\n### Response: Let's think step by step."
)
DATASETS = ("gsm8k", "math")

_ANSWER_IS = re.compile(r"The answer is:?\s*", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|[-+]?\.\d+")


def prompt(query: str) -> str:
    """The instruction prompt for one problem."""
    return PROMPT.format(query=query)


def _check(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown math dataset {dataset!r}; valid: {', '.join(DATASETS)}")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced; None if absent."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def _after_marker(text: str) -> str | None:
    parts = _ANSWER_IS.split(text)
    if len(parts) > 1:
        return parts[-1].strip()
    if "####" in text:
        return text.rsplit("####", 1)[1].strip()
    return None


def _first_number(text: str) -> str | None:
    m = _NUMBER.search(text)
    return None if m is None else m.group(0)


def _to_number(s: str) -> float | None:
    s = s.replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        return float(Fraction(s)) if "/" in s else float(s)
    except (ValueError, ZeroDivisionError):
        return None


def extract_answer(text: str, dataset: str) -> str | None:
    """The final answer in a model output or a gold solution; None when there is none.

    gsm8k: the first number after ``The answer is`` or ``####``, else the last number in the text, normalised
    (``"1,000"`` → ``"1000"``, ``"$18.00"`` → ``"18"``). math: the text after ``The answer is`` (MetaMathQA
    style, a trailing period removed), else the last ``\\boxed{}``, else the whole stripped text.
    """
    _check(dataset)
    if text is None:
        return None
    marked = _after_marker(text)
    if dataset == "gsm8k":
        raw = _first_number(marked) if marked is not None else None
        if raw is None:
            numbers = _NUMBER.findall(text)
            raw = numbers[-1] if numbers else None
        value = None if raw is None else _to_number(raw)
        if value is None:
            return None
        return str(int(value)) if value == int(value) else repr(value)
    if marked is not None:
        boxed = last_boxed(marked)
        answer = boxed if boxed is not None else marked.split("\n")[0].strip()
        return answer.strip().rstrip(".").strip("$ ").strip() or None
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    return text.strip().strip("$").strip() or None


def _verify_math(gold: str, pred: str) -> bool:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    g = parse(f"${gold}$", extraction_config=configs)
    p = parse(f"${pred}$", extraction_config=configs)
    if not g or not p:
        return False
    return bool(verify(g, p))


def is_correct(prediction: str | None, gold: str, dataset: str) -> bool:
    """Whether a prediction (a model output or an extracted answer) matches the gold answer or solution.

    gsm8k: numeric equality (|p − g| ≤ 1e-6 · max(1, |g|)); math: equivalence by ``math-verify``, with exact
    string equality of the normalised answers accepted first.
    """
    _check(dataset)
    if prediction is None:
        return False
    p = extract_answer(prediction, dataset)
    g = extract_answer(gold, dataset)
    if p is None or g is None:
        return False
    if dataset == "gsm8k":
        pv, gv = _to_number(p), _to_number(g)
        return pv is not None and gv is not None and abs(pv - gv) <= 1e-6 * max(1.0, abs(gv))
    if p.replace(" ", "") == g.replace(" ", ""):
        return True
    return _verify_math(g, p)


# ---------------------------------------------------------------- data and the task object
def to_metamath(row: dict) -> dict:
    """A training record as MetaMathQA ``{query, response}``; GSM8K ``{question, answer}`` is reshaped
    (the ``#### X`` line becomes ``The answer is: X``, and the ``<<...>>`` calculator notes are dropped)."""
    if "query" in row and "response" in row:
        return {"query": row["query"], "response": row["response"]}
    if "question" in row and "answer" in row and "####" in row["answer"]:
        body, final = row["answer"].rsplit("####", 1)
        body = re.sub(r"<<[^>]*>>", "", body).strip()
        return {"query": row["question"], "response": f"{body}\nThe answer is: {final.strip()}"}
    raise ValueError(f"training record has neither query/response nor GSM8K question/answer fields: {sorted(row)}")


def eval_record(row: dict, dataset: str) -> dict:
    """``{question, answer}`` from a GSM8K (question/answer) or MATH (problem|context / answer|solution) row."""
    q = next((row[k] for k in ("question", "problem", "context", "query") if k in row), None)
    a = row.get("answer")
    if a is None and "solution" in row:
        a = last_boxed(row["solution"])
    if q is None or a is None:
        raise ValueError(f"{dataset} record lacks a question or an answer field: {sorted(row)}")
    return {"question": q, "answer": a}


def load_train_rows(cfg) -> list[dict]:
    from .generation import read_records

    limit = cfg.get("max_train_samples")
    if cfg.get("train_path"):
        rows = read_records(cfg.train_path, limit)
    else:
        from .glue import load_split_hub

        rows = load_split_hub(cfg.hf_path, None, cfg.train_split)[: limit or None]
    return [to_metamath(r) for r in rows]


def load_eval_rows(spec, dataset: str, limit: int | None) -> list[dict]:
    from .generation import read_records

    if spec.get("path"):
        rows = read_records(spec.path, limit)
    else:
        from .glue import load_split_hub

        rows = load_split_hub(spec.hf_path, spec.get("hf_name"), spec.split)[: limit or None]
    return [eval_record(r, dataset) for r in rows]


class MathTask:
    """MetaMathQA-style training and GSM8K / MATH evaluation by greedy generation."""

    def __init__(self, cfg, tokenizer, train: bool = True) -> None:
        from .generation import CausalCollator, encode, ensure_pad_token

        ensure_pad_token(tokenizer)
        self.cfg, self.tokenizer = cfg, tokenizer
        self.train = [
            encode(tokenizer, prompt(r["query"]), " " + r["response"], int(cfg.max_length), bool(cfg.train_on_inputs))
            for r in (load_train_rows(cfg) if train else [])
        ]
        self.evals = {
            name: load_eval_rows(spec, name, cfg.get("max_eval_samples")) for name, spec in cfg.eval_sets.items()
        }
        self.collate = CausalCollator(tokenizer.pad_token_id)

    def evaluate(self, model, accelerator, batch_size: int, progress: bool = False, generate_fn=None):
        """Accuracy per benchmark and per-example records; ``generate_fn(prompts, max_new_tokens)`` replaces the
        transformers generation (e.g. the vLLM backend)."""
        from .generation import complete

        metrics, records = {}, {}
        for name, rows in self.evals.items():
            prompts = [prompt(r["question"]) for r in rows]
            texts = complete(
                prompts,
                int(self.cfg.max_new_tokens[name]),
                accelerator=accelerator,
                model=model,
                tokenizer=self.tokenizer,
                batch_size=batch_size,
                progress=progress,
                desc=f"generate {name}",
                generate_fn=generate_fn,
            )
            recs = []
            for i, (r, t) in enumerate(zip(rows, texts)):
                pred = extract_answer(t, name)
                recs.append(
                    {
                        "id": i,
                        "generated": t,
                        "extracted": pred,
                        "gold": r["answer"],
                        "correct": is_correct(pred, r["answer"], name) if pred is not None else False,
                    }
                )
            records[name] = recs
            metrics[f"{name}/accuracy"] = sum(x["correct"] for x in recs) / max(1, len(recs))
        return metrics, records
