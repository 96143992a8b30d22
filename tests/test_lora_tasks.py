"""The LoRA system's tasks: language modelling (sliding-window perplexity, bits per character), SuperGLUE, SQuAD."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import (
    SUPERGLUE_FOLDERS,
    compose,
    lm_overrides,
    shared_data,
    tiny_gpt2,
    tiny_overrides,
    train_run,
    write_tiny_squad,
    write_tiny_superglue,
)

from loraxs.tasks import lm, squad, superglue

ADAPTERS = ["lora", "loraxs", "loraxs_random", "lorasb", "full"]


# ================================================================== language modelling
def _reference_nll(model, ids, context, stride):
    """Token by token, float64: each scored token's log-probability from a forward pass over its own prefix inside
    its window (the window rule written out again: windows start at 0, s, 2s, ...; a token is scored by the first
    window that reaches it, with at least one token of the window before it)."""
    total, count, prev_end, begin = 0.0, 0, 0, 0
    n = len(ids)
    while True:
        end = min(begin + context, n)
        for t in range(max(prev_end, begin + 1), end):
            prefix = torch.tensor([ids[begin:t]])
            logp = torch.log_softmax(model(input_ids=prefix).logits[0, -1].double(), -1)
            total -= float(logp[ids[t]])
            count += 1
        prev_end = end
        if end == n:
            return total, count
        begin += stride


@pytest.mark.parametrize("context,stride", [(8, 3), (8, 1), (5, 4), (16, 16)])
def test_sliding_window_nll_equals_a_float64_token_by_token_reference(context, stride):
    model = tiny_gpt2().double()
    g = torch.Generator().manual_seed(context * 100 + stride)
    ids = torch.randint(0, 64, (41,), generator=g).tolist()
    with torch.no_grad():
        want, want_n = _reference_nll(model, ids, context, stride)
    got, got_n, records = lm.sliding_window_nll(model, ids, context, stride, batch_size=3)
    assert got_n == want_n
    assert got == pytest.approx(want, rel=1e-10, abs=1e-10)
    assert sum(r["scored"] for r in records) == got_n and [r["idx"] for r in records] == list(range(len(records)))
    if stride < context:
        assert got_n == len(ids) - 1  # every token but the first, once


def test_stride_equal_to_context_is_the_non_overlapping_figure():
    """Windows [0, C), [C, 2C), ...: each block scored on its own (its first token unscored), as labels = inputs."""
    model = tiny_gpt2().double()
    ids = torch.randint(0, 64, (50,), generator=torch.Generator().manual_seed(3)).tolist()
    total, n = 0.0, 0
    with torch.no_grad():
        for b in range(0, 50, 16):
            block = torch.tensor([ids[b : b + 16]])
            k = block.shape[1] - 1
            logp = torch.log_softmax(model(input_ids=block).logits[0, :-1], -1)  # float64 (labels= upcasts to fp32)
            total -= float(logp.gather(-1, block[0, 1:, None]).sum())
            n += k
    got, got_n, _ = lm.sliding_window_nll(model, ids, 16, 16)
    assert (got_n, got) == (n, pytest.approx(total, rel=1e-10))
    assert got_n == 50 - 4  # 4 windows, 4 unscored first tokens
    overlapping, _, _ = lm.sliding_window_nll(model, ids, 16, 8)
    assert overlapping != pytest.approx(got)


def test_window_layout_and_bad_strides():
    assert lm.windows(10, 4, 2) == [(0, 4, 1), (2, 6, 4), (4, 8, 6), (6, 10, 8)]
    assert lm.windows(10, 4, 4) == [(0, 4, 1), (4, 8, 5), (8, 10, 9)]
    assert lm.windows(3, 8, 4) == [(0, 3, 1)]
    with pytest.raises(ValueError, match=r"stride=5 is invalid; valid: 1\.\.4"):
        lm.windows(10, 4, 5)


def test_bits_per_character_of_a_short_text(tiny_llama_dir):
    """bpc = NLL / ln 2 / characters, through LmTask (tokenisation included) against a reference NLL computed
    token by token; bpc_unit=byte divides by the UTF-8 bytes."""
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loraxs.training.spec import build_spec

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float64).eval()
    text = "janet sells 3 eggs a day . how many dollars ? the answer is 9 .\nshe makes 12 dollars .\n"
    spec = build_spec(compose(["model=smollm2_135m", "task=wikitext2", "task.max_length=8", "task.stride=4"])).task
    task = lm.LmTask.__new__(lm.LmTask)
    task.spec, task.context = spec, 8
    task.eval_ids = lm.tokenize(tok, text)
    task.eval_units = len(text)
    values, _ = task.evaluate(model, Accelerator(cpu=True), batch_size=2)
    with torch.no_grad():
        nll, n = _reference_nll(model, task.eval_ids, 8, 4)
    assert values["bpc"] == pytest.approx(nll / math.log(2) / len(text), rel=1e-9)
    assert values["perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-9)
    assert values["scored_tokens"] == n == len(task.eval_ids) - 1
    assert lm.lm_metrics(nll, n, len("naïve café".encode()))["bpc"] == pytest.approx(nll / math.log(2) / 12)


def test_texts_are_cut_at_split_chars_and_counted_in_chars_or_bytes(tmp_path):
    f = tmp_path / "data.txt"
    f.write_text("abcdé" * 4, encoding="utf-8")  # 20 characters, 24 bytes
    assert lm.cut(lm.read_local(f, "char"), [10, 5, 5], "test") == "abcdé" * 1
    assert lm.cut(lm.read_local(f, "char"), [10, 5, 5], "valid") == "abcdé"
    assert lm.cut(lm.read_local(f, "byte"), [12, 6, 6], "test") == ("abcdé" * 4).encode()[18:]
    with pytest.raises(ValueError, match=r"task.split_chars=\[10, 5, 6\] needs 21 characters; the text has 20"):
        lm.cut("x" * 20, [10, 5, 6], "test")
    with pytest.raises(ValueError, match=r"split 'dev' is unknown"):
        lm.cut("x" * 20, [10, 5, 5], "dev")


def test_wikitext_files_of_the_shared_data_tokenise_and_score(tiny_gpt2_dir, tmp_path):
    """The real WikiText-2 and -103 files load as eval texts (the first 3,000 characters), end to end."""
    wt2, wt103 = shared_data("wikitext-2"), shared_data("wikitext-103")
    for task, path in (("wikitext2", wt2 / "test.txt"), ("wikitext103", wt103 / "wiki.test.tokens")):
        skip = ("task.eval_path", "task.max_eval", "model=")
        over = [o for o in lm_overrides(tiny_gpt2_dir, tmp_path, task) if not o.startswith(skip)]
        m = train_run([*over, "model=gpt2", f"task.eval_path={path}", "task.max_eval_chars=3000",
                       "trainer.max_steps=0", "adapter=lora", "rank=2"])  # fmt: skip
        ppl = m["reported"]["perplexity"]
        assert 10 < ppl < 1e4 and m["reported"]["bpc"] > 0  # a random tiny model over a real text


# ================================================================== SQuAD
def test_squad_scores_follow_the_official_normalisation():
    """Hand-computed: articles, punctuation, case and whitespace are ignored; F1 over the shared tokens; the
    maximum over gold answers; 1.1 gives F1 0 when both sides normalise to nothing, 2.0 gives 1."""
    n = squad.normalize_answer
    assert n("  The  Cat's  hat!  ") == "cats hat" and n("U.S.") == "us" and n("an apple, a pear") == "apple pear"
    assert n("Theatre") == "theatre"  # only whole words are articles
    preds = {"a": "The Cat!", "b": "a  big   red dog.", "c": "Denver Broncos", "d": "", "e": "a"}
    golds = {"a": ["cat"], "b": ["big dog"], "c": ["Broncos", "The Denver Broncos"], "d": ["x"], "e": ["the"]}
    values, per = squad.score(preds, golds, "1.1")
    assert per == {"a": (1.0, 1.0), "b": (0.0, 0.8), "c": (1.0, 1.0), "d": (0.0, 0.0), "e": (1.0, 0.0)}
    assert values == {"exact_match": pytest.approx(3 / 5), "f1": pytest.approx(2.8 / 5)}
    assert squad.f1_v1("big red dog", "big dog") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))


def test_squad2_unanswerable_questions_are_scored_as_the_official_script():
    preds = {"q1": "", "q2": "Paris", "q3": "", "q4": "paris france", "q5": "an"}
    golds = {"q1": [], "q2": [], "q3": ["Paris"], "q4": ["Paris"], "q5": ["the"]}  # q5: all golds normalise to ""
    values, per = squad.score(preds, golds, "2.0")
    assert per == {"q1": (1.0, 1.0), "q2": (0.0, 0.0), "q3": (0.0, 0.0), "q4": (0.0, pytest.approx(2 / 3)),
                   "q5": (1.0, 1.0)}  # fmt: skip
    assert values["exact_match"] == pytest.approx(2 / 5) and values["f1"] == pytest.approx((2 + 2 / 3) / 5)
    assert values["has_ans_exact_match"] == 0.0 and values["has_ans_f1"] == pytest.approx(1 / 3)
    assert values["no_ans_exact_match"] == pytest.approx(2 / 3)
    # a question without a prediction scores 0 (as the official script's "Missing prediction")
    assert squad.score({}, {"q": ["x"]}, "1.1")[0] == {"exact_match": 0.0, "f1": 0.0}


def test_squad_postprocessing_picks_the_best_valid_span_and_the_null_answer():
    context = "alpha beta gamma delta"
    offs = [None, None, (0, 5), (6, 10), (11, 16), (17, 22), None]  # [CLS] q [SEP]? context tokens, [SEP]
    rows = [{"id": "x", "context": context}]
    feats = [{"example": 0, "offsets": offs}]
    s = np.array([0.0, 9.0, 1.0, 3.0, 0.5, 0.0, 9.0])  # the best start (1) is outside the context
    e = np.array([0.0, 9.0, 0.0, 0.2, 2.0, 1.0, 9.0])
    assert squad.postprocess(rows, feats, [s], [e], 20, 30, "1.1") == {"x": "beta gamma"}  # 3 + 2
    assert squad.postprocess(rows, feats, [s], [e], 20, 1, "1.1") == {"x": "beta"}  # answers of 1 token: 3 + 0.2
    e_before = np.array([0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0])  # the best end precedes every good start
    assert squad.postprocess(rows, feats, [s], [e_before], 20, 30, "1.1") == {"x": "alpha"}
    s0, e0 = s.copy(), e.copy()
    s0[0], e0[0] = 4.0, 1.5  # null score 5.5 > best span 5.0
    assert squad.postprocess(rows, feats, [s0], [e0], 20, 30, "2.0") == {"x": ""}
    assert squad.postprocess(rows, feats, [s0], [e0], 20, 30, "2.0", null_threshold=1.0) == {"x": "beta gamma"}
    assert squad.postprocess(rows, feats, [s0], [e0], 20, 30, "1.1") == {"x": "beta gamma"}  # 1.1: always a span


def test_squad_training_targets_point_at_the_answer_in_every_window(tmp_path):
    from conftest import minilm_dir
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    rows = squad.read_official(shared_data("squad-v1.1/dev-v1.1.json"))[:60]
    feats = squad.prepare_features(tok, rows, max_length=96, stride=32, train=True)
    assert len(feats) > len(rows)  # long contexts became several windows
    evals = squad.prepare_features(tok, rows, max_length=96, stride=32, train=False)
    inside = exact = 0
    for f, ev in zip(feats, evals):
        row = rows[ev["example"]]
        a, b = f["start_positions"], f["end_positions"]
        if a == 0:
            assert b == 0
            continue
        inside += 1
        span = row["context"][ev["offsets"][a][0] : ev["offsets"][b][1]]
        answer = row["answers"]["text"][0]
        # the tokens that cover the answer: the answer itself, or a word piece longer ("gold" in "golden")
        assert answer in span and len(span) <= len(answer) + 12, (span, answer)
        exact += span == answer
    assert inside >= len(rows) * 0.9 and exact >= inside * 0.9


def test_squad_local_files_and_the_article_holdout():
    rows = squad.read_official(shared_data("squad-v1.1/dev-v1.1.json"))
    assert len(rows) == 10_570 and len({r["title"] for r in rows}) == 48
    held, rest = squad.split_articles(rows, 4)
    assert len(held) + len(rest) == len(rows) and not {r["title"] for r in held} & {r["title"] for r in rest}
    v2 = squad.read_official(shared_data("squad-v2.0-cs224n/dev-v2.0.json"))
    assert len(v2) == 6_078 and sum(not r["answers"]["text"] for r in v2) == 3_168  # the README's counts


# ================================================================== SuperGLUE
SHARED_COUNTS = {"boolq": 3270, "cb": 56, "copa": 100, "multirc": 4848, "rte": 277, "wic": 638, "wsc": 104}


@pytest.mark.parametrize("layout", sorted(SUPERGLUE_FOLDERS))
def test_each_superglue_task_reads_the_shared_files(layout):
    folder = shared_data("superglue") / SUPERGLUE_FOLDERS[layout]
    records = superglue.to_records(layout, superglue.read_jsonl(folder / "val.jsonl"), "val")
    assert len(records) == SHARED_COUNTS[layout]
    labels = {r["label"] for r in records}
    assert labels == ({0, 1, 2} if layout == "cb" else {0, 1})
    if layout == "multirc":
        assert len({r["group"] for r in records}) == 953  # questions
    if layout == "copa":
        assert all(len(r["choices"]) == 2 for r in records)
    else:
        assert all(r["text_a"] and r["text_b"] for r in records)


def test_superglue_hub_rows_give_the_same_records():
    """The Hub's rows (int labels, MultiRC flattened per answer, WSC flat) map to the local files' records."""
    local = {"premise": "p", "hypothesis": "h", "label": "neutral", "idx": 0}
    hub = {"premise": "p", "hypothesis": "h", "label": 2, "idx": 0}
    assert superglue.to_records("cb", [local], "l") == superglue.to_records("cb", [hub], "h")
    passage = {"idx": 5, "passage": {"text": "T", "questions": [{"question": "Q", "idx": 1, "answers": [
        {"text": "A", "label": 1, "idx": 0}, {"text": "B", "label": 0, "idx": 1}]}]}}  # fmt: skip
    flat = [{"paragraph": "T", "question": "Q", "answer": a, "label": y, "idx": {"paragraph": 5, "question": 1,
             "answer": i}} for i, (a, y) in enumerate([("A", 1), ("B", 0)])]  # fmt: skip
    from_hub = [r for row in flat for r in superglue.to_records("multirc", [row], "h")]
    for r in from_hub:
        r.pop("idx")
    assert [
        {k: v for k, v in r.items() if k != "idx"} for r in superglue.to_records("multirc", [passage], "l")
    ] == from_hub
    wsc_local = {"text": "x", "target": {"span1_text": "a", "span2_text": "b"}, "label": True, "idx": 0}
    wsc_hub = {"text": "x", "span1_text": "a", "span2_text": "b", "label": 1, "idx": 0}
    assert superglue.to_records("wsc", [wsc_local], "l") == superglue.to_records("wsc", [wsc_hub], "h")
    with pytest.raises(ValueError, match=r"l record 1: label 'maybe' is not one of"):
        superglue.to_records("cb", [{**local, "label": "maybe"}], "l")


def test_multirc_exact_match_is_per_question():
    groups = ["a", "a", "a", "b", "b", "c"]
    y = np.array([1, 0, 1, 0, 0, 1])
    p = np.array([1, 0, 1, 1, 0, 1])  # a right, b wrong in one option, c right
    values = superglue.compute_metrics(["f1a", "em"], p, y, groups)
    from sklearn.metrics import f1_score

    assert values == {"f1a": pytest.approx(f1_score(y, p)), "em": pytest.approx(2 / 3)}


@pytest.mark.parametrize("task", ["superglue_cb", "superglue_multirc"])
def test_superglue_metrics_equal_scikit_learn_on_the_written_predictions(task, tiny_model_dir, tmp_path):
    from sklearn.metrics import accuracy_score, f1_score

    data = shared_data("superglue")
    over = [*tiny_overrides(tiny_model_dir, tmp_path), f"task={task}", f"task.data_dir={data}", "rank=2",
            "task.max_eval_samples=400", "trainer.max_steps=2", "task.max_length=128"]  # fmt: skip
    if task == "superglue_multirc":
        over += ["task.train_split=val", "task.max_train_samples=16"]  # no MultiRC training file here
    m = train_run(over)
    run = tmp_path / "runs" / m["run_dir"].split("/")[-1]
    preds = [json.loads(x) for x in next((run / "predictions").glob("validation_*.jsonl")).read_text().splitlines()]
    y, p = [r["label"] for r in preds], [r["prediction"] for r in preds]
    rep = m["reported"]
    if task == "superglue_cb":
        assert len(preds) == 56
        assert rep["accuracy"] == pytest.approx(accuracy_score(y, p))
        assert rep["f1_macro"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    else:
        assert len(preds) == 400
        assert rep["f1a"] == pytest.approx(f1_score(y, p, zero_division=0))
        by_q: dict = {}
        for r in preds:
            by_q.setdefault(r["group"], []).append(r["label"] == r["prediction"])
        assert rep["em"] == pytest.approx(np.mean([all(v) for v in by_q.values()]))


# ================================================================== every new task x every adapter, one step
SG_TASKS = [f"superglue_{t}" for t in sorted(SUPERGLUE_FOLDERS)]
LM_TASKS = ["wikitext2", "wikitext103", "enwik8", "text8"]


def _one_step(over, tmp_path):
    m = train_run([*over, "trainer.max_steps=1"])
    saved = json.loads((tmp_path / "runs" / m["run_dir"].split("/")[-1] / "metrics.json").read_text())
    assert saved["finished"] and saved["evals"][-1]["step"] == 1
    return saved


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("task", LM_TASKS)
def test_each_lm_task_and_adapter_trains_one_step(task, adapter, tiny_llama_dir, tmp_path):
    m = _one_step([*lm_overrides(tiny_llama_dir, tmp_path, task), f"adapter={adapter}", "rank=2"], tmp_path)
    assert m["reported"]["perplexity"] > 1 and m["reported"]["bpc"] > 0


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("task", SG_TASKS)
def test_each_superglue_task_and_adapter_trains_one_step(task, adapter, tiny_model_dir, tmp_path):
    data = write_tiny_superglue(tmp_path / "sg")
    over = [*tiny_overrides(tiny_model_dir, tmp_path), f"task={task}", f"task.data_dir={data}", "rank=2"]
    m = _one_step([*over, f"adapter={adapter}"], tmp_path)
    assert compose([f"task={task}"]).task.main_metric in m["reported"]


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("version", ["1.1", "2.0"])
def test_each_squad_task_and_adapter_trains_one_step(version, adapter, tiny_model_dir, tmp_path):
    f = write_tiny_squad(tmp_path / "squad.json", version=version)
    task = "squad_v1" if version == "1.1" else "squad_v2"
    over = [*tiny_overrides(tiny_model_dir, tmp_path), f"task={task}", f"task.eval_path={f}", "task.holdout_articles=1",
            "task.max_length=48", "task.doc_stride=16", "rank=2", f"adapter={adapter}"]  # fmt: skip
    if adapter == "lorasb":  # its step size rule divides by the warm-up, which the SQuAD recipe has none of
        over.append("task.warmup_ratio=0.1")
    m = _one_step(over, tmp_path)
    assert {"exact_match", "f1"} <= set(m["reported"])
    if version == "2.0":
        assert "no_ans_exact_match" in m["reported"]
    if adapter != "full":  # the span head trains beside the adapter
        assert m["trainable"]["head"] == 2 * 32 + 2


def test_a_squad_run_exports_a_peft_folder_that_peft_loads_with_the_span_head(tiny_model_dir, tmp_path):
    """adapter_peft/ (task type QUESTION_ANS, qa_outputs saved) gives PEFT the same start / end logits."""
    from peft import PeftModel
    from transformers import AutoModelForQuestionAnswering

    from loraxs import load_adapter

    f = write_tiny_squad(tmp_path / "squad.json", version="1.1")
    over = [*tiny_overrides(tiny_model_dir, tmp_path), "task=squad_v1", f"task.eval_path={f}", "task.holdout_articles=1",
            "task.max_length=48", "task.doc_stride=16", "rank=2", "trainer.max_steps=2"]  # fmt: skip
    run = tmp_path / "runs" / train_run(over)["run_dir"].split("/")[-1]
    assert json.loads((run / "adapter_peft" / "adapter_config.json").read_text())["task_type"] == "QUESTION_ANS"
    torch.manual_seed(0)
    ours = AutoModelForQuestionAnswering.from_pretrained(tiny_model_dir).eval()
    load_adapter(ours, run / "adapter")
    theirs = PeftModel.from_pretrained(
        AutoModelForQuestionAnswering.from_pretrained(tiny_model_dir), run / "adapter_peft"
    )
    x = torch.randint(1000, 2000, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ours(input_ids=x), theirs.eval()(input_ids=x)
    assert torch.allclose(a.start_logits, b.start_logits, atol=1e-5) and torch.allclose(
        a.end_logits, b.end_logits, atol=1e-5
    )
