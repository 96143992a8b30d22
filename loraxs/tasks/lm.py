"""Language modelling (WikiText-2/103, enwik8, text8): causal-LM fine-tuning on contiguous blocks of a text, and
evaluation of a whole text by a sliding window.

Training: the training text is tokenised once (no special tokens) and cut into contiguous blocks of
``task.max_length`` tokens (the remainder is dropped, as ``run_clm.py``'s ``group_texts``); each block is its own
target (``labels = input_ids``; the model shifts them).

Evaluation, the standard token-level definition (the transformers perplexity guide, with exact sums): the eval
text is tokenised once into ``x_0 … x_{N-1}``. Windows ``[b, e)`` start at ``b = 0, s, 2s, …`` (``s`` =
``task.stride``) with ``e = min(b + C, N)`` (``C`` = ``task.eval_context``); each scores only the tokens the
previous window did not, ``x_t`` for ``prev_e ≤ t < e`` (the first window: ``1 ≤ t < e``), each conditioned on
``x_b … x_{t-1}``; the last window ends at ``N``. With ``s < C`` every token but ``x_0`` is scored exactly once
(``n = N - 1``); with ``s = C`` the windows are disjoint blocks and each block's first token goes unscored. With
``n`` the number of scored tokens::

    NLL = -Σ_t ln p(x_t | x_{b(t)} … x_{t-1})           (nats)
    perplexity = exp(NLL / n)      nll = NLL / n
    bpc = NLL / ln 2 / n_chars     (characters of the eval text; bytes of its UTF-8 with ``bpc_unit=byte``)

``s = C`` gives non-overlapping windows (each token sees only its own block's past); ``s < C`` gives every
scored token at least ``C - s`` tokens of context.

Text sources: one local file per split (``train_path``, ``eval_path``), one local file holding all three splits
cut at ``split_chars`` (``data_file``: enwik8 and text8 are 90M / 5M / 5M), or the Hub (``hf_path``,
``hf_name``; the rows of a split are joined as they are, each WikiText row ending in its newline; with
``split_chars`` the split's single text is cut likewise).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

SPLIT_NAMES = ("train", "validation", "test")


# ------------------------------------------------------------------ the texts
def cut(data: str | bytes, split_chars: list[int], split: str) -> str | bytes:
    """The ``split`` part (``train``, ``validation``/``valid``, ``test``) of ``data`` cut into consecutive pieces of
    ``split_chars`` lengths."""
    key = {"valid": "validation", "val": "validation"}.get(split, split)
    if key not in SPLIT_NAMES:
        raise ValueError(f"split {split!r} is unknown for a text cut by task.split_chars; valid: {SPLIT_NAMES}")
    if len(split_chars) != 3:
        raise ValueError(f"task.split_chars={split_chars} is invalid; expected [train, valid, test] lengths")
    i = SPLIT_NAMES.index(key)
    start = sum(split_chars[:i])
    if start + split_chars[i] > len(data):
        raise ValueError(
            f"task.split_chars={split_chars} needs {sum(split_chars[: i + 1]):,} characters; the text has {len(data):,}"
        )
    return data[start : start + split_chars[i]]


def read_local(path: str | Path, unit: str) -> str | bytes:
    """A local text file: ``str`` (UTF-8), or the raw ``bytes`` when bits are counted per byte."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if unit == "byte":
        return path.read_bytes()
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from None


def read_hub(hf_path: str, hf_name: str | None, split: str) -> str:
    """The rows of a Hub split (``text`` column) joined as they are."""
    import datasets

    try:
        ds = datasets.load_dataset(hf_path, hf_name, split=split)
    except Exception as e:
        first = str(e).splitlines()[0][:160] if str(e) else ""
        raise RuntimeError(
            f"could not load {hf_path}{'/' + hf_name if hf_name else ''} split {split!r} from the Hugging Face Hub "
            f"({type(e).__name__}: {first}); pass local files: task.train_path / task.eval_path (one text file "
            "per split) or task.data_file (one file cut at task.split_chars)"
        ) from None
    if "text" not in ds.column_names:
        raise ValueError(f"{hf_path} split {split!r} has no 'text' column; found {ds.column_names}")
    return "".join(ds["text"])


def load_text(spec: Any, which: str) -> tuple[str, int]:
    """The ``train`` or ``eval`` text of a task spec, truncated to ``max_train_chars`` / ``max_eval_chars``, and
    the number of units (characters, or bytes) bits per character divides by."""
    split = spec.train_split if which == "train" else spec.eval_split
    path = spec.train_path if which == "train" else spec.eval_path
    if spec.data_file:
        data = cut(read_local(spec.data_file, spec.bpc_unit), spec.split_chars or [], split)
    elif path:
        data = read_local(path, spec.bpc_unit)
    elif spec.hf_path:
        data = read_hub(spec.hf_path, spec.hf_name, "train" if spec.split_chars else split)
        if spec.split_chars:
            data = cut(data, spec.split_chars, split)
        if spec.bpc_unit == "byte":
            data = data.encode("utf-8")
    else:
        raise ValueError(f"task {spec.name}: set task.{which}_path, task.data_file or task.hf_path")
    limit = spec.max_train_chars if which == "train" else spec.max_eval_chars
    if limit:
        data = data[:limit]
    units = len(data)
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if not text.strip():
        raise ValueError(f"task {spec.name}: the {which} text is empty")
    return text, units


def tokenize(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a whole text, without special tokens (one call: the ids equal those of the whole string)."""
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


# ------------------------------------------------------------------ the sliding window
def windows(n_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, first_scored)`` of each window over ``n_tokens`` tokens: the window ``[begin, end)`` scores
    positions ``first_scored … end-1``; together they score ``1 … n_tokens-1`` once each."""
    if context < 2:
        raise ValueError(f"context={context} is too small; a window needs at least 2 tokens")
    if stride < 1 or stride > context:
        raise ValueError(f"stride={stride} is invalid; valid: 1..{context} (the context)")
    out: list[tuple[int, int, int]] = []
    prev_end = 0
    for begin in range(0, max(n_tokens - 1, 1), stride):
        end = min(begin + context, n_tokens)
        out.append((begin, end, max(prev_end, begin + 1)))
        prev_end = end
        if end == n_tokens:
            break
    return out


@torch.no_grad()
def sliding_window_nll(
    model: Any,
    ids: list[int],
    context: int,
    stride: int,
    batch_size: int = 8,
    device: Any = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = False,
) -> tuple[float, int, list[dict[str, Any]]]:
    """Summed NLL (nats, float64 accumulation) and count of the scored tokens of ``ids`` (see the module docstring),
    and a record per window. ``shard = (index, count)``: only every ``count``-th window from ``index`` (processes
    split the windows; the caller sums). Windows of equal length are batched ``batch_size`` at a time."""
    from tqdm.auto import tqdm

    device = device or next(model.parameters()).device
    all_windows = windows(len(ids), context, stride)
    mine = [(i, w) for i, w in enumerate(all_windows) if i % shard[1] == shard[0]]
    groups: dict[int, list[tuple[int, tuple[int, int, int]]]] = {}
    for i, w in mine:
        groups.setdefault(w[1] - w[0], []).append((i, w))
    total, count, records = 0.0, 0, []
    bar = tqdm(total=len(mine), desc="eval windows", leave=False, disable=not progress)
    for length, items in groups.items():
        for j in range(0, len(items), batch_size):
            chunk = items[j : j + batch_size]
            x = torch.tensor([ids[b:e] for _, (b, e, _) in chunk], device=device)
            logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 -> fp32; fp64 stays
            # position p predicts token p + 1 of the window
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none"
            ).view(len(chunk), length - 1)
            for row, (i, (b, e, first)) in zip(nll, chunk):
                scored = row[first - b - 1 :].double()
                total += float(scored.sum())
                count += scored.numel()
                records.append({"idx": i, "begin": b, "end": e, "scored": scored.numel(), "nll": float(scored.sum())})
            bar.update(len(chunk))
    bar.close()
    records.sort(key=lambda r: r["idx"])
    return total, count, records


def lm_metrics(nll_sum: float, n_tokens: int, n_units: int) -> dict[str, float]:
    """Perplexity ``exp(NLL/n)``, mean token NLL (nats) and bits per character ``NLL / ln 2 / n_units``."""
    return {
        "perplexity": math.exp(nll_sum / n_tokens),
        "nll": nll_sum / n_tokens,
        "bpc": nll_sum / math.log(2) / n_units,
    }


# ------------------------------------------------------------------ the task object the loop uses
class LmTask:
    """Blocks of the training text for training; the sliding-window evaluation of the eval text."""

    def __init__(self, spec: Any, tokenizer: Any, train: bool = True) -> None:
        self.spec = spec
        self.tokenizer = tokenizer
        self.block = int(spec.max_length)
        self.context = int(spec.eval_context or spec.max_length)
        if spec.stride > self.context:
            raise ValueError(f"task.stride={spec.stride} exceeds the window (task.eval_context={self.context})")
        self.train: list[dict[str, Any]] = []
        if train:
            text, _ = load_text(spec, "train")
            ids = tokenize(tokenizer, text)
            n = len(ids) // self.block
            if n == 0:
                raise ValueError(
                    f"task {spec.name}: the training text has {len(ids)} tokens, fewer than one block of "
                    f"task.max_length={self.block}"
                )
            self.train = [{"input_ids": ids[i * self.block : (i + 1) * self.block]} for i in range(n)]
            if spec.max_train_samples:
                self.train = self.train[: spec.max_train_samples]
        self.val: list[dict[str, Any]] = []
        text, self.eval_units = load_text(spec, "eval")
        self.eval_ids = tokenize(tokenizer, text)
        if len(self.eval_ids) < 2:
            raise ValueError(f"task {spec.name}: the eval text has fewer than 2 tokens")
        self.evals = {spec.eval_split: self.eval_ids}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        x = torch.tensor([it["input_ids"] for it in items])
        return {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": x.clone()}

    def evaluate(
        self, model: Any, accelerator: Any, batch_size: int, progress: bool = False
    ) -> tuple[dict[str, float], dict[str, list[dict[str, Any]]]]:
        """Perplexity, mean NLL and bits per character of the eval text (windows shared among the processes)."""
        model.eval()
        with accelerator.autocast():
            total, count, records = sliding_window_nll(
                model,
                self.eval_ids,
                self.context,
                int(self.spec.stride),
                batch_size,
                accelerator.device,
                (accelerator.process_index, accelerator.num_processes),
                progress and accelerator.is_main_process,
            )
        if accelerator.num_processes > 1:
            sums = accelerator.reduce(torch.tensor([total, float(count)], device=accelerator.device), "sum")
            total, count = float(sums[0]), int(sums[1])
            records = [r for part in _gather(records) for r in part]
            records.sort(key=lambda r: r["idx"])
        model.train()
        values = lm_metrics(total, count, self.eval_units)
        values["scored_tokens"] = count
        return values, {self.spec.eval_split: records}


def _gather(obj: Any) -> list[Any]:
    from accelerate.utils import gather_object

    return gather_object([obj])
