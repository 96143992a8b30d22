"""SuperGLUE: BoolQ, CB, COPA, MultiRC, RTE, WiC, WSC from local JSONL (the canonical ``train.jsonl`` /
``val.jsonl`` files) or the Hub (``aps/super_glue``), in the GLUE family's style.

Every record becomes ``{text_a, text_b, label, idx}`` (COPA: ``{choices: [(a, b), (a, b)], label, idx}``;
MultiRC: one record per answer option, with ``group`` = its question), with the Hub's label ids:

==========  ==================================================  =============================================
layout      model input                                         label
==========  ==================================================  =============================================
boolq       (question, passage)                                 1 = true
cb          (premise, hypothesis)                               0 entailment, 1 contradiction, 2 neutral
rte         (premise, hypothesis)                               0 entailment, 1 not_entailment
wic         ("<word>: <sentence1>", sentence2)                  1 = same sense
wsc         (text, "<span2> refers to <span1>")                 1 = coreferent
copa        (premise + " What was the cause|effect?", choice)   the correct choice, 0 or 1
            for each choice: a multiple-choice head
multirc     (paragraph, "<question> <answer>") per answer       1 = a correct answer
==========  ==================================================  =============================================

Metrics (scikit-learn, as SuperGLUE scores them): ``accuracy``; ``f1_macro`` (CB: the unweighted mean of the
three classes' F1); ``f1a`` (MultiRC: binary F1 over all answer options) and ``em`` (MultiRC: the share of
questions whose every answer option is classified correctly).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

LABELS: dict[str, list[str]] = {
    "cb": ["entailment", "contradiction", "neutral"],
    "rte": ["entailment", "not_entailment"],
}


# ---------------------------------------------------------------- reading
def _label(layout: str, raw: Any, where: str) -> int:
    """The Hub's label id of a raw label: a class name (CB, RTE), a bool, or an int already."""
    if layout in LABELS and isinstance(raw, str):
        if raw not in LABELS[layout]:
            raise ValueError(f"{where}: label {raw!r} is not one of {LABELS[layout]}")
        return LABELS[layout].index(raw)
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, int) and raw >= -1:  # -1: an unlabelled (test) record, refused by the task
        return raw
    raise ValueError(f"{where}: label {raw!r} is not a class name, true/false or a class id")


def to_records(layout: str, raw: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """Records of the table in the module docstring, from local (canonical JSONL) or Hub rows."""
    out: list[dict[str, Any]] = []
    for n, r in enumerate(raw):
        where = f"{source} record {n + 1}"
        try:
            if layout == "multirc":
                out.extend(_multirc(r, where, len(out)))
                continue
            label = _label(layout, r["label"], where) if "label" in r else -1
            if layout == "boolq":
                rec = {"text_a": r["question"], "text_b": r["passage"]}
            elif layout in ("cb", "rte"):
                rec = {"text_a": r["premise"], "text_b": r["hypothesis"]}
            elif layout == "wic":
                rec = {"text_a": f"{r['word']}: {r['sentence1']}", "text_b": r["sentence2"]}
            elif layout == "wsc":
                t = r.get("target", r)  # local: nested under target; Hub: flat
                rec = {"text_a": r["text"], "text_b": f"{t['span2_text']} refers to {t['span1_text']}"}
            elif layout == "copa":
                stem = f"{r['premise']} What was the {r['question']}?"
                rec = {"choices": [(stem, r["choice1"]), (stem, r["choice2"])]}
            else:
                raise ValueError(f"layout {layout!r} is unknown")
        except (KeyError, TypeError) as e:
            raise ValueError(f"{where}: missing field {e} for SuperGLUE {layout}") from None
        out.append({**rec, "label": label, "idx": len(out)})
    return out


def _multirc(r: dict[str, Any], where: str, start: int) -> list[dict[str, Any]]:
    if "passage" in r:  # canonical JSONL: a passage with its questions and their answers
        rows = []
        for q in r["passage"]["questions"]:
            for a in q["answers"]:
                rows.append(
                    {
                        "text_a": r["passage"]["text"],
                        "text_b": f"{q['question']} {a['text']}",
                        "label": _label("multirc", a.get("label", -1), where),
                        "group": f"{r['idx']}-{q['idx']}",
                    }
                )
    else:  # Hub: one row per answer
        rows = [
            {
                "text_a": r["paragraph"],
                "text_b": f"{r['question']} {r['answer']}",
                "label": _label("multirc", r["label"], where),
                "group": f"{r['idx']['paragraph']}-{r['idx']['question']}",
            }
        ]
    return [{**row, "idx": start + i} for i, row in enumerate(rows)]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL file; a bad line is a ``ValueError`` naming the file and line."""
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    for i, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not JSON ({e.msg})") from None
    if not rows:
        raise ValueError(f"{path}: no records")
    return rows


def local_file(data_dir: str | Path, folder: str, stem: str) -> Path:
    """``data_dir/folder/stem.jsonl`` (or ``data_dir/stem.jsonl`` when data_dir is the task folder itself)."""
    base = Path(data_dir) / folder if (Path(data_dir) / folder).is_dir() else Path(data_dir)
    return base / f"{stem}.jsonl"


def check_local(data_dir: str | Path, folder: str, stems: list[str]) -> None:
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(f"task.data_dir={data_dir} does not exist; give a folder holding {folder}/train.jsonl")
    missing = [str(local_file(data_dir, folder, s)) for s in stems if not local_file(data_dir, folder, s).is_file()]
    if missing:
        raise FileNotFoundError(
            f"task.data_dir={data_dir}: {', '.join(missing)} missing (expected {folder}/<split>.jsonl; "
            "the shared data has train.jsonl for CB, RTE and COPA only)"
        )


# ---------------------------------------------------------------- metrics
def _accuracy(p: np.ndarray, y: np.ndarray, groups: Any) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y, p))


def _f1_macro(p: np.ndarray, y: np.ndarray, groups: Any) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, p, average="macro", zero_division=0))


def _f1a(p: np.ndarray, y: np.ndarray, groups: Any) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, p, average="binary", pos_label=1, zero_division=0))


def _em(p: np.ndarray, y: np.ndarray, groups: Any) -> float:
    if groups is None:
        raise ValueError("metric em needs answer groups (MultiRC)")
    right: dict[Any, bool] = {}
    for g, pi, yi in zip(groups, p, y):
        right[g] = right.get(g, True) and bool(pi == yi)
    return float(np.mean(list(right.values())))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray, Any], float]] = {
    "accuracy": _accuracy,
    "f1_macro": _f1_macro,
    "f1a": _f1a,
    "em": _em,
}


def compute_metrics(names: list[str], preds: Any, labels: Any, groups: Any = None) -> dict[str, float]:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; valid: {', '.join(METRICS)}")
    return {n: METRICS[n](np.asarray(preds), np.asarray(labels), groups) for n in names}


# ---------------------------------------------------------------- the task object the loop uses
class SuperGlueTask:
    """Tokenised SuperGLUE data and its evaluation (``AutoModelForSequenceClassification``, or
    ``AutoModelForMultipleChoice`` for COPA). Texts are truncated to ``spec.max_length`` tokens (the longer
    text first), padded per batch."""

    def __init__(self, spec: Any, tokenizer: Any) -> None:
        self.spec = spec
        self.tokenizer = tokenizer
        self.choice = spec.layout == "copa"
        self.train = self._encode(self._records("train"), spec.max_train_samples)
        self.val: list[dict[str, Any]] = []
        self.eval_records = self._records("eval")
        self.evals = {"validation": self._encode(self.eval_records, spec.max_eval_samples)}
        from transformers import DataCollatorWithPadding

        self._pad = DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def _records(self, which: str) -> list[dict[str, Any]]:
        t = self.spec
        if t.data_dir is not None:
            stem = t.train_split if which == "train" else t.eval_split
            path = local_file(t.data_dir, t.folder, stem)
            records = to_records(t.layout, read_jsonl(path), str(path))
        else:
            from .glue import load_split_hub

            split = t.train_split if which == "train" else t.hub_eval_split
            hint = f"pass task.data_dir=<folder holding {t.folder}/{{train,val}}.jsonl>"
            records = to_records(t.layout, load_split_hub(t.hf_path, t.hf_name, split, hint), t.hf_path)
        if any(r["label"] < 0 for r in records):
            raise ValueError(f"task {t.name}: the {which} records have no labels (a test split?); use train / val")
        if any(r["label"] >= max(2, t.num_labels) for r in records):
            raise ValueError(f"task {t.name}: a label exceeds task.num_labels={t.num_labels}")
        return records

    def _encode(self, rows: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
        rows = rows[:limit] if limit else rows
        n = int(self.spec.max_length)
        if self.choice:
            k = len(rows[0]["choices"])
            flat = [c for r in rows for c in r["choices"]]
            enc = self.tokenizer([a for a, _ in flat], [b for _, b in flat], truncation=True, max_length=n)
            return [
                {**{key: enc[key][i * k : (i + 1) * k] for key in enc.keys()}, "labels": r["label"]}
                for i, r in enumerate(rows)
            ]
        enc = self.tokenizer([r["text_a"] for r in rows], [r["text_b"] for r in rows], truncation=True, max_length=n)
        return [{**{key: enc[key][i] for key in enc.keys()}, "labels": r["label"]} for i, r in enumerate(rows)]

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.choice:
            return self._pad(items)
        k = len(items[0]["input_ids"])
        flat = [{key: it[key][j] for key in it if key != "labels"} for it in items for j in range(k)]
        batch = self._pad(flat)
        out = {key: v.view(len(items), k, -1) for key, v in batch.items()}
        import torch

        out["labels"] = torch.tensor([it["labels"] for it in items])
        return out

    def evaluate(
        self, model: Any, accelerator: Any, batch_size: int, progress: bool = False
    ) -> tuple[dict[str, float], dict[str, list[dict[str, Any]]]]:
        """``task.metrics`` on the validation set and the per-example predictions ``{validation: [...]}``."""
        import torch
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        model.eval()
        data = self.evals["validation"]
        loader = accelerator.prepare(DataLoader(data, batch_size=batch_size, collate_fn=self.collate))
        logits, labels = [], []
        for batch in tqdm(loader, desc="eval", leave=False, disable=not (progress and accelerator.is_main_process)):
            with torch.no_grad(), accelerator.autocast():
                out = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
            lg, lb = accelerator.gather_for_metrics((out.float(), batch["labels"]))
            logits.append(lg.cpu())
            labels.append(lb.cpu())
        preds = torch.cat(logits).argmax(-1).numpy()
        gold = torch.cat(labels).numpy()
        groups = [r.get("group") for r in self.eval_records[: len(gold)]] if self.spec.layout == "multirc" else None
        values = compute_metrics(list(self.spec.metrics), preds, gold, groups)
        records = [
            {"idx": i, "label": int(g), "prediction": int(p), **({"group": groups[i]} if groups else {})}
            for i, (g, p) in enumerate(zip(gold, preds))
        ]
        model.train()
        return values, {"validation": records}
