"""The official protocol of the LLM tasks: prompts and tokenisation, templates byte for byte, the official graders,
stop strings, and the validation-loss selection of LoRA-XS commonsense.

Reference implementations below are transcribed from the official files (LoRA-XS and LoRA-SB share them) and kept
as close to the original as Python allows; ours must agree with them.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction  # the official scripts import Fraction from the "fraction" package (same a/b values)
from math import isclose
from pathlib import Path

import pytest
from conftest import commonsense_overrides, shared_data, train_run

from loraxs.tasks import commonsense, math
from loraxs.tasks.generation import encode

# ------------------------------------------------------------------ templates, byte for byte
# LoRA-SB utils/data_utils.py generate_prompt_cr (training), with output = ""
SB_TRAIN = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "            ### Instruction:\n            {instruction}\n\n            ### Response:\n            "
)
SB_TRAIN_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request.\n\n            ### Instruction:\n            {instruction}\n\n"
    "            ### Input:\n            {input}\n\n            ### Response:\n            "
)
# LoRA-XS main_commonsense_tuning.py generate_prompt (training; note the trailing spaces), output = ""
XS_TRAIN = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.  \n\n"
    "                ### Instruction:\n                {instruction}\n\n                ### Response:\n                "
)
XS_TRAIN_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request. \n\n                ### Instruction:\n                "
    "{instruction}\n\n                ### Input:\n                {input}\n\n                ### Response:\n"
    "                "
)
# LoRA-XS instruction_tuning_eval/commonsense_eval.py generate_prompt (evaluation)
XS_EVAL = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request. \n\n"
    "                ### Instruction:\n                {instruction}\n\n                ### Response:\n                "
)
# LoRA-SB instruction_tuning_eval/commonsense_eval.py generate_prompt (evaluation) = LLM-Adapters' clean prompt
CLEAN = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


@pytest.mark.parametrize(
    "template,train,expected",
    [
        ("lorasb", True, (SB_TRAIN, SB_TRAIN_INPUT)),
        ("loraxs", True, (XS_TRAIN, XS_TRAIN_INPUT)),
        ("loraxs", False, (XS_EVAL, None)),
        ("lorasb", False, (CLEAN, None)),
        ("clean", True, (CLEAN, None)),
        ("clean", False, (CLEAN, None)),
    ],
)
def test_commonsense_templates_are_the_official_files_byte_for_byte(template, train, expected):
    plain, with_input = expected
    rec = {"instruction": "{instruction}", "input": "", "output": "x"}
    assert commonsense.prompt(rec, template, train=train) == plain
    if with_input is not None:
        assert commonsense.prompt({**rec, "input": "{input}"}, template, train=train) == with_input


def test_math_prompts_train_ends_with_response_eval_thinks_step_by_step():
    head = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    assert math.train_prompt("Q?") == f"{head}\n\n### Instruction:\nQ?\n\n### Response:"
    assert math.prompt("Q?") == f"{head}\n\n### Instruction:\nQ?\n\n### Response: Let's think step by step."


def test_encoding_is_the_official_tokenisation(tiny_llama_dir):
    """Math (data_utils.preprocess): tokenize(source + target + eos) with the first len(tokenize(source)) labels
    masked; commonsense (tokenize + generate_and_tokenize_prompt): the same with eos appended when it fits."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)

    def official_math(source, target, max_length):
        full = tok(source + target + tok.eos_token, max_length=max_length, truncation=True)["input_ids"]
        n_source = len(tok(source, max_length=max_length, truncation=True)["input_ids"])
        return full, [-100] * n_source + full[n_source:]

    def official_commonsense(user_prompt, full_prompt, max_length):
        def tokenize(text, add_eos):
            ids = tok(text, truncation=True, max_length=max_length)["input_ids"]
            if ids[-1] != tok.eos_token_id and len(ids) < max_length and add_eos:
                ids = [*ids, tok.eos_token_id]
            return ids

        full = tokenize(full_prompt, True)
        n_user = len(tokenize(user_prompt, False))
        return full, [-100] * n_user + full[n_user:]

    src = math.train_prompt("how many eggs does janet sell ?")
    for max_length in (256, 30):  # whole, and truncated inside the response
        ids, labels = official_math(src, "she sells 3 eggs . the answer is : 3", max_length)
        got = encode(tok, src, "she sells 3 eggs . the answer is : 3", max_length)
        assert (got["input_ids"], got["labels"]) == (ids, labels)
    rec = {"instruction": "please choose true or false", "input": "", "output": "the correct answer is true"}
    for template in ("clean", "lorasb", "loraxs"):
        user = commonsense.prompt(rec, template, train=True)
        ids, labels = official_commonsense(user, user + rec["output"], 64)
        got = encode(tok, user, rec["output"], 64)
        assert (got["input_ids"], got["labels"]) == (ids, labels)
        assert any(x != -100 for x in got["labels"])


# ------------------------------------------------------------------ the official graders
def _is_number(s):  # gsm8k_eval.py
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
        pass
    return False


def official_extract_answer_number(completion):  # gsm8k_eval.py extract_answer_number
    text = completion.split("The answer is: ")
    if len(text) > 1:
        extract_ans = text[-1].strip()
        match = re.search(r"[\-+]?\d*[\.,/]?\d+", extract_ans)
        if match:
            if "/" in match.group():
                denominator = match.group().split("/")[1]
                numerator = match.group().split("/")[0]
                if _is_number(denominator) and _is_number(numerator):
                    if denominator == "0":
                        return round(float(numerator.replace(",", "")))
                    frac = Fraction(match.group().replace(",", ""))
                    return round(float(frac.numerator / frac.denominator))
                return None
            if float(match.group().replace(",", "")) == float("inf"):
                return None
            return round(float(match.group().replace(",", "")))
        return None
    return None


def official_gsm8k(completion, gold_solution):  # gsm8k_eval.py gsm8k_test + grader.math_equal (numbers)
    gold = int(gold_solution.split("#### ")[1].replace(",", ""))
    y_pred = official_extract_answer_number(completion)
    if y_pred is None:
        return False
    return float(y_pred) == float(gold) or any(isclose(x, y_pred, rel_tol=1e-4) for x in (gold / 100, gold, gold * 100))


GSM8K_CASES = [  # the lenient grader's hand-written cases (test_math_commonsense_answers.py), gold with ####
    ("The answer is: 18", "Janet sells 16 - 3 - 4 = 9 duck eggs.\n#### 18", True),
    ("The answer is: 17", "#### 18", False),
    ("#### 1,000", "#### 1000", False),  # no "The answer is: ": wrong (lenient: right)
    ("#### 1,000", "#### 100", False),
    ("$18.00", "#### 18", False),
    ("$18.50", "#### 18", False),
    # official quirks, kept: x100 and /100 count, fractions and decimals are rounded, "1,234,567" reads 1,234
    ("The answer is: 1800", "#### 18", True),
    ("The answer is: 0.18", "#### 18", False),  # rounded to 0 first
    ("The answer is: 3/4", "#### 1", True),
    ("The answer is: 2.5 dollars", "#### 2", True),
    ("The answer is: 1,234,567", "#### 1234", True),
    ("The answer is: -3.", "#### -3", True),
    ("The answer is: five", "#### 5", False),
]


@pytest.mark.parametrize("completion,gold,expected", GSM8K_CASES)
def test_official_gsm8k_grader_scores_as_the_official_code(completion, gold, expected):
    assert official_gsm8k(completion, gold) is expected
    answer = math.official_answer(completion, "gsm8k")
    assert math.official_gsm8k_correct(answer, gold) is expected


def test_official_gsm8k_grader_on_every_shared_gold_answer():
    rows = [json.loads(line) for line in (shared_data("gsm8k") / "test.jsonl").open()]
    two_commas = 0
    for r in rows:
        body, final = r["answer"].rsplit("####", 1)
        completion = f"{body.strip()}\nThe answer is: {final.strip().replace(',', '')}"  # as MetaMathQA writes it
        assert math.official_gsm8k_correct(math.official_answer(completion, "gsm8k"), r["answer"])
        assert official_gsm8k(completion, r["answer"])
        assert not math.official_gsm8k_correct(math.official_answer(r["answer"], "gsm8k"), r["answer"])  # no marker
        # with its commas, 1,450,000 reads 1,450 (the regex takes one separator): wrong, in both implementations
        commas = f"The answer is: {final.strip()}"
        ours = math.official_gsm8k_correct(math.official_answer(commas, "gsm8k"), r["answer"])
        assert ours == official_gsm8k(commas, r["answer"]) == (final.count(",") < 2)
        two_commas += final.count(",") >= 2
    assert two_commas > 0


MATH_CASES = [  # (completion, gold, official is_equiv result)
    ("... The answer is: \\frac{1}{2}", "\\frac{1}{2}", True),
    ("The answer is: \\dfrac12.", "\\frac{1}{2}", True),  # dfrac -> frac, \frac12 -> \frac{1}{2}
    ("The answer is: 0.5", "\\frac{1}{2}", True),  # "0.5" -> \frac{1}{2}
    ("The answer is: 1/2", "\\frac{1}{2}", True),  # a/b -> \frac{a}{b}
    ("The answer is: 50\\%", "50", True),
    ("The answer is: 90^\\circ", "90", True),
    ("The answer is: x = 5", "5", True),  # a short "x =" prefix is dropped
    ("The answer is: (1, 2)", "(1,2)", True),
    ("The answer is: 1,000", "1000", True),  # numbers compare after removing commas
    ("The answer is: 149.\nSo", "149", True),
    ("The answer is: 150", "149", False),
    ("The answer is: \\frac{1}{3}", "\\frac{1}{2}", False),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", False),  # no "The answer is: ": wrong
    ("The answer is: \\sqrt{3}/2", "7", True),  # quirk: "a/b" of non-integers raises in strip_string -> True
]


@pytest.mark.parametrize("completion,gold,expected", MATH_CASES)
def test_official_math_grader(completion, gold, expected):
    answer = math.official_answer(completion, "math")
    assert math.official_math_correct(answer, gold) is expected


def test_official_math_grader_on_every_shared_gold_answer():
    rows = [json.loads(line) for line in (shared_data("math") / "test.jsonl").open()]
    assert len(rows) == 5000
    bad = [r["answer"] for r in rows if not math.official_math_correct(r["answer"], r["answer"])]
    assert bad == []


# ------------------------------------------------------------------ stop strings
def test_generation_stops_at_the_stop_strings(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loraxs.tasks.generation import generate

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float64)
    prompts = ["the answer is", "how many eggs does janet sell each day ?", "write a response"]
    free = generate(model, tok, prompts, batch_size=3, max_new_tokens=24, progress=False)
    words = free[0].split()
    stop = words[len(words) // 2]  # a word the model does generate, halfway through its first completion
    stopped = generate(model, tok, prompts, batch_size=3, max_new_tokens=24, progress=False, stop=[stop])
    for a, b in zip(free, stopped):
        assert stop not in b and a.startswith(b)
        assert b == a[: a.find(stop)] if stop in a else b == a
    n_tokens = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in (free[0], stopped[0])]
    assert n_tokens[1] < n_tokens[0]


# ------------------------------------------------------------------ LoRA-XS commonsense: validation-loss selection
def test_val_loss_selection_restores_the_best_checkpoint(tiny_llama_dir, tmp_path):
    from safetensors.torch import load_file

    over = commonsense_overrides(tiny_llama_dir, tmp_path, tmp_path / "cs")
    m = train_run(
        [*over, "adapter=loraxs", "rank=4", "task.val_set_size=4", "task.val_every=1", "task.selection=val_loss"]
    )
    # 16 training examples, 4 held out (datasets' train_test_split, seed 42): 12 in batches of 4 = 3 steps
    assert [v["step"] for v in m["val_losses"]] == [1, 2, 3]
    best = min(m["val_losses"], key=lambda v: v["loss"])
    assert m["best_val"] == best
    assert len(m["evals"]) == 1 and m["reported"] == m["evals"][0]
    assert m["reported"]["selected"] == f"val_loss_step{best['step']}"
    run_dir = Path(m["run_dir"])
    final = load_file(run_dir / "adapter" / "loraxs_adapter.safetensors")
    kept = load_file(run_dir / "adapter_best" / "loraxs_adapter.safetensors")
    assert final.keys() == kept.keys() and all((final[k] == kept[k]).all() for k in final)
    assert (run_dir / "predictions" / f"boolq_val_loss_step{best['step']}.jsonl").is_file()
