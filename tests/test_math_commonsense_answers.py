"""Answer extraction and grading (issue 4): hand-written outputs, and every shared gold answer against itself."""

import json

import pytest
from conftest import shared_data

from loraxs.tasks import commonsense, math


@pytest.mark.parametrize(
    "text,expected",
    [
        ("She makes 9 * 2 = $18 every day. The answer is: 18", "18"),
        ("Janet sells 9 eggs.\n#### 1,000", "1000"),
        ("$18.00", "18"),
        ("The answer is: $1,234.50.", "1234.5"),
        ("The answer is: -3", "-3"),
        ("no number here", None),
        ("first 3 then 7 and finally 12", "12"),
    ],
)
def test_gsm8k_extraction(text, expected):
    assert math.extract_answer(text, "gsm8k") == expected


@pytest.mark.parametrize(
    "pred,gold,ok",
    [
        ("The answer is: 18", "Janet sells 16 - 3 - 4 = 9 duck eggs.\n#### 18", True),
        ("The answer is: 17", "#### 18", False),
        ("#### 1,000", "1000", True),
        ("#### 1,000", "100", False),
        ("$18.00", "18", True),
        ("$18.50", "18", False),
    ],
)
def test_gsm8k_grading(pred, gold, ok):
    assert math.is_correct(pred, gold, "gsm8k") is ok


@pytest.mark.parametrize(
    "pred,gold,ok",
    [
        ("0.5", "\\frac{1}{2}", True),
        ("0.25", "\\frac{1}{2}", False),
        ("\\dfrac12", "\\frac{1}{2}", True),
        ("\\dfrac13", "\\frac{1}{2}", False),
        ("(1, 2)", "(1,2)", True),
        ("(2, 1)", "(1,2)", False),
        ("[0, 1)", "[0,1)", True),
        ("[0, 1]", "[0,1)", False),
        ("So the sum is $\\boxed{\\frac{625}{648}}$.", "\\frac{625}{648}", True),
        ("The answer is: \\frac{625}{649}", "\\frac{625}{648}", False),
        ("The answer is: 149.", "149", True),
        ("The answer is: 150.", "149", False),
    ],
)
def test_math_grading(pred, gold, ok):
    assert math.is_correct(pred, gold, "math") is ok


def test_math_extraction_forms():
    assert math.extract_answer("x = \\boxed{\\frac{a}{b+\\sqrt{2}}} done", "math") == "\\frac{a}{b+\\sqrt{2}}"
    assert math.extract_answer("Thus ... The answer is: \\frac{1}{2}", "math") == "\\frac{1}{2}"
    assert math.last_boxed("no box") is None
    with pytest.raises(ValueError, match=r"unknown math dataset 'aime'; valid: gsm8k, math"):
        math.extract_answer("1", "aime")


def test_prompt_templates_are_exact():
    assert math.prompt("What is 1+1?") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nWhat is 1+1?\n\n### Response: Let's think step by step."
    )
    rec = {"instruction": "Q?", "input": "", "output": "the correct answer is true", "answer": "true"}
    assert commonsense.prompt(rec) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nQ?\n\n### Response:\n"
    )


def test_every_gsm8k_gold_grades_against_itself():
    rows = [json.loads(line) for line in (shared_data("gsm8k") / "test.jsonl").open()]
    assert len(rows) == 1319
    assert all(math.is_correct(r["answer"], r["answer"], "gsm8k") for r in rows)
    assert all(math.extract_answer(r["answer"], "gsm8k") is not None for r in rows)


def test_every_math_gold_grades_against_itself():
    rows = [json.loads(line) for line in (shared_data("math") / "test.jsonl").open()]
    assert len(rows) == 5000
    bad = [r["answer"] for r in rows if not math.is_correct(r["answer"], r["answer"], "math")]
    assert bad == []


def test_math_gold_sample_grades_against_itself_and_boxed_solution():
    rows = [json.loads(line) for line in (shared_data("math") / "test.jsonl").open()][::25]  # 200 problems
    for r in rows:
        assert math.is_correct(r["answer"], r["answer"], "math"), r["answer"]
        assert math.is_correct(r["chain_of_thought"], r["answer"], "math"), r["answer"]


@pytest.mark.parametrize("dataset", commonsense.BENCHMARKS)
def test_every_commonsense_gold_output_extracts_to_its_answer(dataset):
    records = commonsense.load_test(shared_data("commonsense/test"), dataset)
    assert records
    assert all(commonsense.extract_answer(r["output"], dataset) == r["answer"] for r in records)


def test_hellaswag_rebuilt_from_bz2():
    records = commonsense.load_test(shared_data("commonsense/test"), "hellaswag")
    assert len(records) == 10042
    first = records[0]
    assert first["instruction"].startswith(
        "Please choose the correct ending to complete the given sentence: Roof shingle removal: A man is sitting on "
        "a roof. he\n\nEnding1: is using wrap to wrap a pair of skis. Ending2: is ripping level tiles off."
    )
    assert first["instruction"].endswith("\n\nAnswer format: ending1/ending2/ending3/ending4")
    assert first["answer"] == "ending4" and first["output"] == "the correct answer is ending4"


@pytest.mark.parametrize(
    "text,dataset,expected",
    [
        ("the correct answer is true", "boolq", "true"),
        ("The correct answer is True", "boolq", None),  # case-sensitive, as the official code
        ("I think solution2, not solution1", "piqa", "solution2"),
        ("answer3", "social_i_qa", "answer3"),
        ("option1", "winogrande", "option1"),
        ("ending5", "hellaswag", None),
        ("no idea", "ARC-Easy", None),
    ],
)
def test_commonsense_extraction(text, dataset, expected):
    assert commonsense.extract_answer(text, dataset) == expected
