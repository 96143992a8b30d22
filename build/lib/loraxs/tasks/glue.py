"""GLUE: examples from the Hub (``nyu-mll/glue``) or from a local folder in the standard GLUE tsv layout.

Both sources give the same records, with the Hub's field names and label ids::

    cola {sentence}  sst2 {sentence}  mrpc {sentence1, sentence2}  qnli {question, sentence}
    rte {sentence1, sentence2}  stsb {sentence1, sentence2} (label: float 0-5)
    mnli {premise, hypothesis}  qqp {question1, question2}

Metrics (scikit-learn / scipy, no network): accuracy, f1 (binary, positive class 1), mcc (Matthews),
pearson, spearman.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class Layout:
    """How a local GLUE tsv is read: header or not, the column of each field and of the label."""

    header: bool
    fields: dict[str, int | str]  # field -> column index (no header) or column name
    label: int | str
    label_map: dict[str, int] | None = None  # string label -> Hub label id; None = int (or float for stsb)
    regression: bool = False


NLI2 = {"entailment": 0, "not_entailment": 1}
LAYOUTS: dict[str, Layout] = {
    "cola": Layout(False, {"sentence": 3}, 1),
    "sst2": Layout(True, {"sentence": "sentence"}, "label"),
    "mrpc": Layout(True, {"sentence1": "#1 String", "sentence2": "#2 String"}, "Quality"),
    "qnli": Layout(True, {"question": "question", "sentence": "sentence"}, "label", NLI2),
    "rte": Layout(True, {"sentence1": "sentence1", "sentence2": "sentence2"}, "label", NLI2),
    "stsb": Layout(True, {"sentence1": "sentence1", "sentence2": "sentence2"}, "score", regression=True),
    "mnli": Layout(
        True,
        {"premise": "sentence1", "hypothesis": "sentence2"},
        "gold_label",
        {"entailment": 0, "neutral": 1, "contradiction": 2},
    ),
    "qqp": Layout(True, {"question1": "question1", "question2": "question2"}, "is_duplicate"),
}


def local_folder(data_dir: str | Path, folder: str) -> Path:
    """``data_dir/folder`` if it exists, else ``data_dir`` itself when it already is that folder."""
    data_dir = Path(data_dir)
    if (data_dir / folder).is_dir():
        return data_dir / folder
    return data_dir


def check_local(data_dir: str | Path, folder: str, stems: Sequence[str]) -> Path:
    """Validate a local GLUE folder before anything heavy; returns the folder holding the tsv files."""
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(f"task.data_dir={data_dir} does not exist; give a folder holding {folder}/train.tsv")
    base = local_folder(data_dir, folder)
    missing = [f"{s}.tsv" for s in stems if not (base / f"{s}.tsv").is_file()]
    if missing:
        raise FileNotFoundError(
            f"task.data_dir={data_dir}: {', '.join(missing)} missing in {base} "
            f"(expected the GLUE layout: {', '.join(f'{folder}/{s}.tsv' for s in stems)})"
        )
    return base


def read_tsv(path: str | Path, layout: Layout) -> list[dict[str, Any]]:
    """Read one GLUE tsv into records ``{field..., label, idx}`` (UTF-8, a byte-order mark allowed, as in the
    standard download's MRPC files); a malformed row, label or encoding, or a file without examples, is a
    ``ValueError`` naming the file and line."""
    rows: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from None
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) <= (1 if layout.header else 0):
        raise ValueError(
            f"{path}: no examples (the file is empty{' or holds only its header' if layout.header else ''})"
        )
    start = 0
    cols: dict[str, int] = {}
    if layout.header:
        header = lines[0].rstrip("\r").split("\t")
        cols = {name: i for i, name in enumerate(header)}
        wanted = [*layout.fields.values(), layout.label]
        missing = [c for c in wanted if c not in cols]
        if missing:
            raise ValueError(f"{path}: header lacks columns {missing}; found {header}")
        start = 1

    def col(spec: int | str) -> int:
        return spec if isinstance(spec, int) else cols[spec]

    for lineno, line in enumerate(lines[start:], start=start + 1):
        parts = line.rstrip("\r").split("\t")
        try:
            rec: dict[str, Any] = {k: parts[col(c)] for k, c in layout.fields.items()}
            raw = parts[col(layout.label)]
        except IndexError:
            raise ValueError(
                f"{path}:{lineno}: expected at least {max(map(col, [*layout.fields.values(), layout.label])) + 1} "
                f"tab-separated columns, found {len(parts)}"
            ) from None
        if layout.label_map is not None:
            if raw not in layout.label_map:
                raise ValueError(f"{path}:{lineno}: label {raw!r} not in {sorted(layout.label_map)}")
            rec["label"] = layout.label_map[raw]
        else:
            try:
                rec["label"] = float(raw) if layout.regression else int(raw)
            except ValueError:
                kind = "a number" if layout.regression else "an integer class id"
                raise ValueError(f"{path}:{lineno}: label {raw!r} is not {kind}") from None
            if not layout.regression and rec["label"] not in (0, 1):  # the integer-labelled tasks are binary
                raise ValueError(f"{path}:{lineno}: label {raw!r} is not a class id (0 or 1)")
        rec["idx"] = len(rows)
        rows.append(rec)
    return rows


def load_split_local(data_dir: str | Path, folder: str, layout_name: str, stem: str) -> list[dict[str, Any]]:
    base = check_local(data_dir, folder, [stem])
    return read_tsv(base / f"{stem}.tsv", LAYOUTS[layout_name])


def load_split_hub(hf_path: str, hf_name: str | None, split: str, hint: str | None = None) -> list[dict[str, Any]]:
    """One split from the Hub through ``datasets``; a clear error, with ``hint`` (what to pass instead), when the
    Hub cannot be reached."""
    import datasets

    try:
        ds = datasets.load_dataset(hf_path, hf_name, split=split)
    except Exception as e:
        hint = hint or "download GLUE and pass task.data_dir=<folder in the GLUE tsv layout>"
        raise RuntimeError(
            f"could not load {hf_path}{'/' + hf_name if hf_name else ''} split {split!r} from the Hugging Face Hub "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); {hint}"
        ) from None
    return [dict(r) for r in ds]


# ---------------------------------------------------------------- metrics
def _accuracy(p: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y, p))


def _f1(p: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, p, average="binary", pos_label=1, zero_division=0))


def _mcc(p: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(y, p))


def _pearson(p: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import pearsonr

    return float(pearsonr(p, y)[0])


def _spearman(p: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(p, y)[0])


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "mcc": _mcc,
    "pearson": _pearson,
    "spearman": _spearman,
}


def predictions(logits: np.ndarray, num_labels: int) -> np.ndarray:
    """Class ids (argmax) for classification; the single output, as float64, for regression (num_labels = 1)."""
    return logits[:, 0].astype(np.float64) if num_labels == 1 else logits.argmax(-1)


def compute_metrics(names: Sequence[str], preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``{name: value}`` for each metric name; unknown names are an error listing the valid ones."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; valid: {', '.join(METRICS)}")
    return {n: METRICS[n](np.asarray(preds), np.asarray(labels)) for n in names}


# ---------------------------------------------------------------- the task object the loop uses
class GlueTask:
    """Tokenised GLUE data and its evaluation, for ``AutoModelForSequenceClassification`` models.

    ``spec`` is the task's :class:`~loraxs.training.spec.GlueTaskSpec`. Records come from ``spec.data_dir`` (GLUE
    tsv layout) or the Hub; texts are tokenised once, truncated to ``spec.max_length``, padded per batch.
    """

    def __init__(self, spec: Any, tokenizer: Any) -> None:
        self.spec = spec
        self.tokenizer = tokenizer
        self.num_labels = int(spec.num_labels)
        self.metric_names = list(spec.metrics)
        self.train = self._encode(self._records("train", "train", spec.max_train_samples))
        self.val: list[dict[str, Any]] = []
        self.evals = {
            split: self._encode(self._records(split, stem, spec.max_eval_samples))
            for split, stem in spec.eval_splits.items()
        }
        from transformers import DataCollatorWithPadding

        self._pad = DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def _records(self, hub_split: str, stem: str, limit: int | None) -> list[dict[str, Any]]:
        t = self.spec
        if t.data_dir is not None:
            rows = load_split_local(t.data_dir, t.folder, t.layout, stem)
        else:
            rows = load_split_hub(t.hf_path, t.hf_name, hub_split)
        return rows[:limit] if limit else rows

    def _encode(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fields = list(self.spec.text_fields)
        texts = [[r[f] for r in rows] for f in fields]
        enc = self.tokenizer(*texts, truncation=True, max_length=int(self.spec.max_length))
        label_dtype = float if self.num_labels == 1 else int
        out = []
        for i, r in enumerate(rows):
            item = {k: enc[k][i] for k in enc.keys()}
            item["labels"] = label_dtype(r["label"])
            out.append(item)
        return out

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return self._pad(items)

    def evaluate(
        self, model: Any, accelerator: Any, batch_size: int, progress: bool = False
    ) -> tuple[dict[str, float], dict[str, list[dict[str, Any]]]]:
        """Metrics on every eval split (with several splits named ``<split>/<metric>``) and the per-example
        predictions ``{split: [{idx, label, prediction}]}``."""
        import torch
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        results: dict[str, float] = {}
        records: dict[str, list[dict[str, Any]]] = {}
        model.eval()
        for split, data in self.evals.items():
            loader = accelerator.prepare(DataLoader(data, batch_size=batch_size, collate_fn=self.collate))
            logits, labels = [], []
            for batch in tqdm(
                loader, desc=f"eval {split}", leave=False, disable=not (progress and accelerator.is_main_process)
            ):
                with torch.no_grad(), accelerator.autocast():
                    out = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
                lg, lb = accelerator.gather_for_metrics((out.float(), batch["labels"]))
                logits.append(lg.cpu())
                labels.append(lb.cpu())
            preds = predictions(torch.cat(logits).numpy(), self.num_labels)
            gold = torch.cat(labels).numpy()
            values = compute_metrics(self.metric_names, preds, gold)
            records[split] = [
                {"idx": i, "label": g.item(), "prediction": p.item()} for i, (g, p) in enumerate(zip(gold, preds))
            ]
            prefix = "" if len(self.evals) == 1 else _short(split) + "/"
            results.update({prefix + k: v for k, v in values.items()})
        model.train()
        return results, records


def _short(split: str) -> str:
    return split.removeprefix("validation_")
