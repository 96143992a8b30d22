"""SQuAD 1.1 and 2.0: extractive question answering with a span head (``AutoModelForQuestionAnswering``).

Features: ``(question, context)`` tokenised with the context truncated to ``max_length`` tokens in windows that
overlap by ``doc_stride`` tokens (the tokenizer's ``stride``), as ``run_qa.py`` does. A training feature's target
is the answer's first and last token, or the first token (``[CLS]``) when the answer is not inside the window
(and for 2.0's unanswerable questions).

Post-processing, per question, over all its windows: the ``n_best`` highest start and end logits give the
candidate spans ``start ≤ end < start + max_answer_length`` inside the context, scored ``s_start + s_end``;
the answer is the best span's text (character offsets into the original context). SQuAD 2.0: the null score is
the smallest ``[CLS]`` score ``s_start[0] + s_end[0]`` over the windows, and the answer is empty when
``null − best span > null_threshold`` (the BERT reference rule).

Scores: the official evaluation scripts (``evaluate-v1.1.py``, ``evaluate-v2.0.py``): answers normalised by
lower-casing, removing punctuation, the articles a / an / the, and extra whitespace; exact match and token F1,
the maximum over the gold answers. 2.0 counts a question whose gold answers all normalise to nothing as
unanswerable (gold ``""``), and F1 is 1 when both token lists are empty, 0 when one is. Values are fractions
(the scripts print them ×100).
"""

from __future__ import annotations

import collections
import json
import re
import string
from pathlib import Path
from typing import Any

import numpy as np


# ---------------------------------------------------------------- the official scoring
def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (the official scripts' function)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s, flags=re.UNICODE)
    return " ".join(s.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def _overlap_f1(pred: list[str], gold: list[str]) -> float:
    """F1 of the shared tokens (multiset overlap); 0 when nothing is shared."""
    same = sum((collections.Counter(pred) & collections.Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def f1_v1(prediction: str, truth: str) -> float:
    """Token F1 as ``evaluate-v1.1.py``: 0 when nothing is shared (also when both normalise to nothing)."""
    return _overlap_f1(normalize_answer(prediction).split(), normalize_answer(truth).split())


def f1_v2(prediction: str, truth: str) -> float:
    """Token F1 as ``evaluate-v2.0.py``: with an empty side, 1 if both are empty, else 0."""
    pred = normalize_answer(prediction).split() if prediction else []
    gold = normalize_answer(truth).split() if truth else []
    if not pred or not gold:
        return float(pred == gold)
    return _overlap_f1(pred, gold)


def score(predictions: dict[str, str], answers: dict[str, list[str]], version: str) -> tuple[dict[str, float], dict]:
    """Official EM / F1 (fractions) of ``predictions`` (id → text) against ``answers`` (id → gold texts; empty for
    an unanswerable question), and per-question ``{id: (em, f1)}``. A question without a prediction scores 0.
    2.0 adds the scores on the answerable (``has_ans_*``) and unanswerable (``no_ans_exact_match``) questions."""
    per: dict[str, tuple[float, float]] = {}
    has_ans: dict[str, bool] = {}
    for qid, golds in answers.items():
        pred = predictions.get(qid, "")
        if version == "2.0":
            golds = [a for a in golds if normalize_answer(a)] or [""]
            has_ans[qid] = golds != [""]
            per[qid] = (max(exact_match(pred, g) for g in golds), max(f1_v2(pred, g) for g in golds))
        else:
            per[qid] = (max(exact_match(pred, g) for g in golds), max(f1_v1(pred, g) for g in golds))
    ems, f1s = [v[0] for v in per.values()], [v[1] for v in per.values()]
    out = {"exact_match": float(np.mean(ems)), "f1": float(np.mean(f1s))}
    if version == "2.0":
        has = [q for q in per if has_ans[q]]
        no = [q for q in per if not has_ans[q]]
        out["has_ans_exact_match"] = float(np.mean([per[q][0] for q in has])) if has else float("nan")
        out["has_ans_f1"] = float(np.mean([per[q][1] for q in has])) if has else float("nan")
        out["no_ans_exact_match"] = float(np.mean([per[q][0] for q in no])) if no else float("nan")
    return out, per


# ---------------------------------------------------------------- reading
def read_official(path: str | Path) -> list[dict[str, Any]]:
    """Questions of an official-format SQuAD JSON, as the Hub's rows: ``{id, title, context, question,
    answers: {text: [...], answer_start: [...]}}`` (2.0's unanswerable questions have no answers)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a SQuAD JSON file ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{path}: not a SQuAD JSON file (expected {{'version', 'data': [articles]}})")
    rows = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                answers = [] if qa.get("is_impossible") else qa["answers"]
                rows.append(
                    {
                        "id": qa["id"],
                        "title": article.get("title", ""),
                        "context": para["context"],
                        "question": qa["question"],
                        "answers": {
                            "text": [a["text"] for a in answers],
                            "answer_start": [a["answer_start"] for a in answers],
                        },
                    }
                )
    return rows


def split_articles(rows: list[dict[str, Any]], n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(first n articles' questions, the rest)`` (articles in file order, by title)."""
    titles: list[str] = []
    for r in rows:
        if not titles or titles[-1] != r["title"]:
            titles.append(r["title"])
    if n >= len(titles):
        raise ValueError(f"task.holdout_articles={n} leaves nothing to train on; the file has {len(titles)} articles")
    held = set(titles[:n])
    return [r for r in rows if r["title"] in held], [r for r in rows if r["title"] not in held]


# ---------------------------------------------------------------- features
def prepare_features(tokenizer: Any, rows: list[dict[str, Any]], max_length: int, stride: int, train: bool) -> list:
    """Windows of each question's context (see the module docstring). Training features carry
    ``start_positions`` / ``end_positions``; evaluation features ``example`` (the row index) and ``offsets``
    (character spans of the context tokens, ``None`` elsewhere)."""
    if tokenizer.padding_side != "right":
        raise ValueError("SQuAD features need a tokenizer that pads on the right (question first, then context)")
    enc = tokenizer(
        [r["question"].lstrip() for r in rows],
        [r["context"] for r in rows],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    features = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        ex = enc["overflow_to_sample_mapping"][i]
        seq = enc.sequence_ids(i)
        feat = {k: enc[k][i] for k in keys}
        if train:
            ans = rows[ex]["answers"]
            start_tok = end_tok = 0
            if ans["answer_start"]:
                a0 = ans["answer_start"][0]
                a1 = a0 + len(ans["text"][0])
                ctx = [t for t, s in enumerate(seq) if s == 1]
                if ctx and offsets[ctx[0]][0] <= a0 and offsets[ctx[-1]][1] >= a1:
                    start_tok = next(t for t in ctx if offsets[t][1] > a0)
                    end_tok = next(t for t in reversed(ctx) if offsets[t][0] < a1)
            feat["start_positions"], feat["end_positions"] = start_tok, end_tok
        else:
            feat["example"] = ex
            feat["offsets"] = [o if s == 1 else None for o, s in zip(offsets, seq)]
        features.append(feat)
    return features


def postprocess(
    rows: list[dict[str, Any]],
    features: list[dict[str, Any]],
    start_logits: list[np.ndarray],
    end_logits: list[np.ndarray],
    n_best: int,
    max_answer_length: int,
    version: str,
    null_threshold: float = 0.0,
) -> dict[str, str]:
    """The answer text of each question (id → text; ``""`` = no answer, 2.0 only)."""
    by_example: dict[int, list[int]] = collections.defaultdict(list)
    for f, feat in enumerate(features):
        by_example[feat["example"]].append(f)
    out: dict[str, str] = {}
    for ex, row in enumerate(rows):
        best_score, best_text = -np.inf, ""
        null_score = np.inf
        for f in by_example.get(ex, []):
            s, e, offsets = start_logits[f], end_logits[f], features[f]["offsets"]
            null_score = min(null_score, float(s[0] + e[0]))
            starts = np.argsort(s)[::-1][:n_best]
            ends = np.argsort(e)[::-1][:n_best]
            for a in starts:
                for b in ends:
                    if a >= len(offsets) or b >= len(offsets) or offsets[a] is None or offsets[b] is None:
                        continue
                    if b < a or b - a + 1 > max_answer_length:
                        continue
                    sc = float(s[a] + e[b])
                    if sc > best_score:
                        best_score = sc
                        best_text = row["context"][offsets[a][0] : offsets[b][1]]
        if version == "2.0" and (best_score == -np.inf or null_score - best_score > null_threshold):
            best_text = ""
        out[row["id"]] = best_text
    return out


# ---------------------------------------------------------------- the task object the loop uses
class SquadTask:
    """Training features of the training questions; evaluation of the eval questions (official EM / F1)."""

    def __init__(self, spec: Any, tokenizer: Any, train: bool = True) -> None:
        self.spec = spec
        self.tokenizer = tokenizer
        train_rows, eval_rows = self._rows(train)
        train_rows = train_rows if train else []
        if spec.max_eval_samples:
            eval_rows = eval_rows[: spec.max_eval_samples]
        if spec.max_train_samples:
            train_rows = train_rows[: spec.max_train_samples]
        n, stride = int(spec.max_length), int(spec.doc_stride)
        if stride >= n:
            raise ValueError(f"task.doc_stride={stride} must be smaller than task.max_length={n}")
        self.train = prepare_features(tokenizer, train_rows, n, stride, train=True) if train_rows else []
        self.val: list[dict[str, Any]] = []
        self.eval_rows = eval_rows
        self.eval_features = prepare_features(tokenizer, eval_rows, n, stride, train=False)
        self.evals = {"validation": self.eval_features}
        from transformers import DataCollatorWithPadding

        self._pad = DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def _rows(self, train: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        t = self.spec
        if t.holdout_articles:
            if t.train_path not in (None, t.eval_path) or not t.eval_path:
                raise ValueError(
                    "task.holdout_articles trains on the rest of task.eval_path; set task.eval_path and leave "
                    f"task.train_path null or equal to it (got {t.train_path})"
                )
            return split_articles(read_official(t.eval_path), t.holdout_articles)[::-1]
        eval_rows = read_official(t.eval_path) if t.eval_path else self._hub(t.eval_split)
        if not train:
            return [], eval_rows
        return (read_official(t.train_path) if t.train_path else self._hub(t.train_split)), eval_rows

    def _hub(self, split: str) -> list[dict[str, Any]]:
        from .glue import load_split_hub

        if not self.spec.hf_path:
            raise ValueError(f"task {self.spec.name}: set task.train_path / task.eval_path or task.hf_path")
        hint = "pass task.train_path / task.eval_path (SQuAD JSON files in the official format)"
        return load_split_hub(self.spec.hf_path, None, split, hint)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        keep = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")
        return self._pad([{k: v for k, v in it.items() if k in keep} for it in items])

    def evaluate(
        self, model: Any, accelerator: Any, batch_size: int, progress: bool = False
    ) -> tuple[dict[str, float], dict[str, list[dict[str, Any]]]]:
        """Official EM / F1 on the eval questions and a record per question (prediction, gold, em, f1)."""
        import torch
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        model.eval()
        loader = accelerator.prepare(DataLoader(self.eval_features, batch_size=batch_size, collate_fn=self.collate))
        starts: list[np.ndarray] = []
        ends: list[np.ndarray] = []
        for batch in tqdm(loader, desc="eval", leave=False, disable=not (progress and accelerator.is_main_process)):
            with torch.no_grad(), accelerator.autocast():
                out = model(**batch)
            s = accelerator.pad_across_processes(out.start_logits.float(), dim=1, pad_index=-1e4)
            e = accelerator.pad_across_processes(out.end_logits.float(), dim=1, pad_index=-1e4)
            s, e = accelerator.gather_for_metrics((s, e))
            starts.extend(s.cpu().numpy())
            ends.extend(e.cpu().numpy())
        model.train()
        t = self.spec
        preds = postprocess(
            self.eval_rows, self.eval_features, starts, ends, t.n_best, t.max_answer_length, t.version, t.null_threshold
        )
        answers = {r["id"]: list(r["answers"]["text"]) for r in self.eval_rows}
        values, per = score(preds, answers, t.version)
        records = [
            {
                "idx": i,
                "id": r["id"],
                "prediction": preds[r["id"]],
                "answers": answers[r["id"]],
                "exact_match": per[r["id"]][0],
                "f1": per[r["id"]][1],
            }
            for i, r in enumerate(self.eval_rows)
        ]
        return values, {"validation": records}
