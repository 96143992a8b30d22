r"""Math word problems: MetaMathQA → GSM8K and MATH (METHODS.md §3).

Training prompt (both papers' code), the response appended directly, then eos::

    Below is an instruction that describes a task. Write a response that appropriately completes the request.

    ### Instruction:
    {query}

    ### Response:

Evaluation prompt: the same ending in ``### Response: Let's think step by step.``

Two graders (``task.grader``):

- ``official``: the official evaluation scripts (``instruction_tuning_eval/gsm8k_eval.py``, ``MATH_eval.py`` of both
  repositories). The answer is the text after the last ``The answer is: ``; none means wrong. GSM8K: the first
  number there (``[-+]?\d*[.,/]?\d+``), a fraction evaluated, rounded to an integer, equal to the gold integer
  after ``####`` (or to it times 100 or over 100, within 1e-4 relative, as its ``math_equal``). MATH: the text up
  to the first ``".\n"``, a trailing period dropped, compared with the gold ``\boxed{}`` content by the official
  ``is_equiv``: Hendrycks' ``strip_string`` normalisation on both, then equal strings, equal numbers (also x100,
  /100) or equal bracketed parts. Its last resort, sympy ``parse_expr``/``simplify`` on the raw model text (an
  ``eval`` of generated text without a time limit), is replaced by ``math-verify``. As in the official code, an
  answer whose normalisation raises counts as correct (one "/" between non-integers such as ``\sqrt{3}/2``, two
  ``	ext{ `` units, a trailing ``\sqrt``): a quirk of the official grader, kept so that numbers compare.
- ``lenient``: ``The answer is``, else ``####``, else the last number (GSM8K, compared numerically) or the last
  ``\boxed{}`` (MATH, compared by mathematical equivalence with ``math-verify``).
"""

from __future__ import annotations

import re
from fractions import Fraction
from math import isclose
from typing import Any

TRAIN_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{query}\n\n### Response:"
)
PROMPT = TRAIN_PROMPT + " Let's think step by step."
DATASETS = ("gsm8k", "math")

_ANSWER_IS = re.compile(r"The answer is:?\s*", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|[-+]?\.\d+")


def train_prompt(query: str) -> str:
    """The training prompt for one problem (the response follows it directly)."""
    return TRAIN_PROMPT.format(query=query)


def prompt(query: str) -> str:
    """The evaluation prompt for one problem (ends in "Let's think step by step.")."""
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


# ---------------------------------------------------------------- the official graders
_OFFICIAL_NUMBER = re.compile(r"[\-+]?\d*[\.,/]?\d+")


def official_answer(completion: str, dataset: str) -> str | None:
    """The official scripts' answer: GSM8K the rounded integer (as a string), MATH the normalised-later text;
    ``None`` when there is no ``The answer is: `` (counted wrong)."""
    _check(dataset)
    parts = completion.split("The answer is: ")
    if len(parts) < 2:
        return None
    tail = parts[-1]
    if dataset == "math":
        ans = tail.split(".\n")[0].strip()
        return (ans[:-1] if ans.endswith(".") else ans).strip()
    match = _OFFICIAL_NUMBER.search(tail.strip())
    if match is None:
        return None
    text = match.group()
    if "/" in text:
        num, den = text.split("/")
        if not (_is_number(num) and _is_number(den)):
            return None
        value = float(num.replace(",", "")) if den == "0" else float(Fraction(text.replace(",", "")))
    else:
        value = float(text.replace(",", ""))
        if value == float("inf"):
            return None
    return str(round(value))


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        pass
    try:
        import unicodedata

        unicodedata.numeric(s)
        return True
    except (TypeError, ValueError):
        return False


def _is_digit(s: Any) -> bool:
    try:
        float(str(s).replace(",", ""))
        return True
    except ValueError:
        return False


def _numbers_equal(pred: Any, ref: Any) -> bool | None:
    """The numeric branch of the official ``math_equal``: ref, ref/100 or ref·100 within 1e-4 relative;
    ``None`` when either is not a number."""
    if not (_is_digit(pred) and _is_digit(ref)):
        return None
    p, r = float(str(pred).replace(",", "")), float(str(ref).replace(",", ""))
    return any(isclose(x, p, rel_tol=1e-4) for x in (r / 100, r, r * 100))


def official_gsm8k_correct(answer: str | None, gold_solution: str) -> bool:
    """``answer`` from :func:`official_answer` against the gold integer after ``#### `` (commas removed)."""
    if answer is None:
        return False
    gold = int(gold_solution.split("#### ")[1].replace(",", "")) if "#### " in gold_solution else gold_solution
    return float(answer) == float(gold) or bool(_numbers_equal(answer, gold))


def _fix_fracs(string: str) -> str:
    substrs = string.split("\\frac")
    new_str = substrs[0]
    for substr in substrs[1:]:
        new_str += "\\frac"
        if substr[0] == "{":
            new_str += substr
        else:
            if len(substr) < 2:
                return string
            a, b = substr[0], substr[1]
            if b != "{":
                new_str += "{" + a + "}{" + b + "}" + substr[2:]
            else:
                new_str += "{" + a + "}" + b + substr[2:]
    return new_str


def _fix_a_slash_b(string: str) -> str:
    if len(string.split("/")) != 2:
        return string
    a, b = string.split("/")
    try:
        a_int, b_int = int(a), int(b)
        assert string == f"{a_int}/{b_int}"
        return "\\frac{" + str(a_int) + "}{" + str(b_int) + "}"
    except AssertionError:  # as the official code: a ValueError (e.g. "a/b") propagates
        return string


def _remove_right_units(string: str) -> str:
    if "\\text{ " in string:
        splits = string.split("\\text{ ")
        assert len(splits) == 2
        return splits[0]
    return string


def _fix_sqrt(string: str) -> str:
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    new_string = splits[0]
    for split in splits[1:]:
        new_string += ("\\sqrt{" + split[0] + "}" + split[1:]) if split[0] != "{" else "\\sqrt" + split
    return new_string


def strip_string(string: str) -> str:
    """Hendrycks' MATH answer normalisation (``strip_string`` of the official ``utils.py``), unchanged."""
    string = string.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    string = string.replace("tfrac", "frac").replace("dfrac", "frac")
    string = string.replace("\\left", "").replace("\\right", "")
    string = string.replace("^{\\circ}", "").replace("^\\circ", "")
    string = string.replace("\\$", "")
    string = _remove_right_units(string)
    string = string.replace("\\%", "")
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    if len(string) == 0:
        return string
    if string[0] == ".":
        string = "0" + string
    if len(string.split("=")) == 2 and len(string.split("=")[0]) <= 2:
        string = string.split("=")[1]
    string = _fix_sqrt(string)
    string = string.replace(" ", "")
    string = _fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return _fix_a_slash_b(string)


def _official_math_equal(pred: str, ref: str) -> bool:
    numeric = _numbers_equal(pred, ref)
    if numeric is not None:
        return numeric
    if not pred:
        return False
    ref, pred = str(ref).strip(), str(pred).strip()
    pred_str, ref_str = pred, ref
    if (pred.startswith("[") and pred.endswith("]") and not ref.startswith("(")) or (
        pred.startswith("(") and pred.endswith(")") and not ref.startswith("[")
    ):
        pred_str, ref_str = pred_str.strip("[]()"), ref_str.strip("[]()")
    for c in "{}()":
        ref_str, pred_str = ref_str.replace(c, ""), pred_str.replace(c, "")
    if pred_str == ref_str:
        return True
    if (pred[:1] + pred[-1:] in ("[]", "()")) and (ref[:1] + ref[-1:] == pred[:1] + pred[-1:]):
        p_parts, r_parts = pred[1:-1].split(","), ref[1:-1].split(",")
        if len(p_parts) == len(r_parts) and all(_official_math_equal(a, b) for a, b in zip(p_parts, r_parts)):
            return True
    return _verify_math(ref, pred)  # official: sympy parse_expr/simplify on the raw strings


def official_math_correct(answer: str | None, gold: str) -> bool:
    """The official ``is_equiv(answer, gold)`` (see the module docstring)."""
    if answer is None or gold is None:
        return False
    try:
        a, g = strip_string(answer), strip_string(gold)
    except Exception:
        return True  # official: math_equal(str1, str1) after a failed normalisation
    return _official_math_equal(a, g) or a == g


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
    """``{question, answer}`` from a GSM8K (question/answer) or MATH row: the problem from ``problem``,
    ``question``, ``instruction`` (official ``MATH_test.jsonl``), ``context`` or ``query``; the answer from
    ``answer``, else the last ``\\boxed{}`` of ``solution`` or ``output``."""
    q = next((row[k] for k in ("question", "problem", "instruction", "context", "query") if k in row), None)
    a = row.get("answer")
    if a is None:
        solution = row.get("solution", row.get("output"))
        a = last_boxed(solution) if solution is not None else None
    if q is None or a is None:
        raise ValueError(f"{dataset} record lacks a question or an answer field: {sorted(row)}")
    return {"question": q, "answer": a}


def load_train_rows(spec: Any) -> list[dict]:
    from .generation import read_records

    limit = spec.max_train_samples
    if spec.train_path:
        rows = read_records(spec.train_path, limit)
    else:
        from .glue import load_split_hub

        hint = "set task.train_path=<a JSON/JSONL file with query/response records>"
        rows = load_split_hub(spec.hf_path, None, spec.train_split, hint)[: limit or None]
    return _each(rows, to_metamath, spec.train_path or spec.hf_path)


def _each(rows: list[dict], fn: Any, source: str) -> list[dict]:
    """``fn`` of every record; a record it refuses is an error naming ``source`` and the record's number."""
    out = []
    for i, r in enumerate(rows, start=1):
        try:
            out.append(fn(r))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{source}: record {i}: {e}") from None
    return out


def load_eval_rows(name: str, spec: Any, limit: int | None) -> list[dict]:
    """The records of one evaluation set (:class:`~loraxs.training.spec.EvalSetSpec`): a local file, or the Hub
    (a list of configs is concatenated in order, e.g. MATH's seven subjects)."""
    from .generation import read_records

    if spec.path:
        rows = read_records(spec.path, limit)
    else:
        from .glue import load_split_hub

        hint = f"set task.eval_sets.{name}.path=<a local JSON/JSONL file>"
        configs = spec.hf_name if isinstance(spec.hf_name, list) else [spec.hf_name]
        rows = [r for c in configs for r in load_split_hub(spec.hf_path, c, spec.split, hint)][: limit or None]
    return _each(rows, lambda r: eval_record(r, spec.kind), spec.path or spec.hf_path)


class MathTask:
    """MetaMathQA-style training and GSM8K / MATH evaluation by generation (``spec``: a ``MathTaskSpec``)."""

    def __init__(self, spec: Any, tokenizer: Any, train: bool = True) -> None:
        from .generation import CausalCollator, encode, ensure_pad_token, hold_out, keep_supervised

        ensure_pad_token(tokenizer)
        self.spec, self.tokenizer = spec, tokenizer
        rows, val = hold_out(load_train_rows(spec) if train else [], spec.val_set_size if train else 0)

        def enc(r: dict) -> dict:
            p = train_prompt(r["query"])
            return encode(tokenizer, p, r["response"], spec.max_length, spec.train_on_inputs)

        self.train = (
            keep_supervised([enc(r) for r in rows], str(spec.train_path or spec.hf_path), spec.max_length)
            if train
            else []
        )
        self.val = [enc(r) for r in val]
        self.evals = {name: load_eval_rows(name, es, spec.max_eval_samples) for name, es in spec.eval_sets.items()}
        self.collate = CausalCollator(tokenizer.pad_token_id)

    def grade(self, text: str, gold: str, kind: str) -> tuple[str | None, bool]:
        """``(extracted answer, correct)`` of one completion by ``spec.grader``."""
        if self.spec.grader == "official":
            answer = official_answer(text, kind)
            if kind == "gsm8k":
                return answer, official_gsm8k_correct(answer, gold)
            return answer, official_math_correct(answer, gold)
        answer = extract_answer(text, kind)
        return answer, is_correct(answer, gold, kind) if answer is not None else False

    def evaluate(self, model, accelerator, batch_size: int, progress: bool = False, generate_fn=None):
        """Accuracy per benchmark and per-example records; ``generate_fn(prompts, max_new_tokens)`` replaces the
        transformers generation (e.g. the vLLM backend)."""
        from .generation import complete

        metrics, records = {}, {}
        for name, rows in self.evals.items():
            es = self.spec.eval_sets[name]
            texts = complete(
                [prompt(r["question"]) for r in rows],
                es.max_new_tokens,
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
                extracted, correct = self.grade(t, r["answer"], es.kind)
                recs.append({"id": i, "generated": t, "extracted": extracted, "gold": r["answer"], "correct": correct})
            records[name] = recs
            metrics[f"{name}/accuracy"] = sum(x["correct"] for x in recs) / max(1, len(recs))
        return metrics, records
