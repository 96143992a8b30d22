"""Causal-LM pieces shared by the instruction-tuning tasks: encoding, collation, batched generation.

Training examples are tokenised as the official code does: ``prompt + response`` in one go (truncated to
``max_length``, ``eos`` appended when there is room), and, with ``train_on_inputs=False`` (the default), the
first ``len(tokenize(prompt))`` labels set to -100, so the loss is on the response only. Generation pads on the
left (so every prompt ends at the last position), decodes greedily (or by beam search) with the KV cache, stops
at the task's stop strings, and returns only the new text, cut before the first stop string (as vLLM returns it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

IGNORE = -100


def ensure_pad_token(tokenizer: Any) -> None:
    """Decoders often have no pad token: use eos (masked out of the loss and the attention anyway)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def encode(tokenizer: Any, prompt: str, response: str, max_length: int, train_on_inputs: bool = False) -> dict:
    """``input_ids`` and ``labels`` of ``prompt + response`` (+ eos when it fits), at most ``max_length`` tokens.

    As the official code: the whole text is tokenised at once and the first ``len(tokenize(prompt))`` labels
    are masked (-100) unless ``train_on_inputs``.
    """
    ids = tokenizer(prompt + response, truncation=True, max_length=max_length)["input_ids"]
    if ids[-1] != tokenizer.eos_token_id and len(ids) < max_length:
        ids = [*ids, tokenizer.eos_token_id]
    labels = list(ids)
    if not train_on_inputs:
        n_prompt = len(tokenizer(prompt, truncation=True, max_length=max_length)["input_ids"])
        labels[:n_prompt] = [IGNORE] * min(n_prompt, len(labels))
    return {"input_ids": ids, "labels": labels}


def keep_supervised(encoded: list[dict[str, Any]], source: str, max_length: int) -> list[dict[str, Any]]:
    """The encoded training records that keep at least one supervised token (a label not ``-100``): a prompt of
    ``max_length`` tokens or more leaves none, adds nothing to the loss and, in a batch of only such records,
    makes it NaN. Those records are dropped with a warning; none at all (or an empty ``source``) is an error."""
    import logging

    if not encoded:
        raise ValueError(f"{source}: no training examples")
    kept = [e for e in encoded if any(x != IGNORE for x in e["labels"])]
    if not kept:
        raise ValueError(
            f"{source}: every prompt fills task.max_length={max_length} tokens, so no response token is left to "
            "train on; raise task.max_length"
        )
    if len(kept) < len(encoded):
        logging.getLogger("loraxs").warning(
            "%s: %d of %d training records dropped: their prompt fills task.max_length=%d tokens (no response "
            "token left to train on)",
            source,
            len(encoded) - len(kept),
            len(encoded),
            max_length,
        )
    return kept


def hold_out(rows: list[dict[str, Any]], size: int, seed: int = 42) -> tuple[list[dict], list[dict]]:
    """``(train, validation)``: ``size`` rows held out exactly as the official LoRA-XS code holds them out,
    ``datasets.Dataset.train_test_split(test_size=size, shuffle=True, seed=seed)``."""
    if size <= 0:
        return rows, []
    import datasets

    if size >= len(rows):
        raise ValueError(f"task.val_set_size={size} leaves no training example ({len(rows)} in all)")
    split = datasets.Dataset.from_list(rows).train_test_split(test_size=size, shuffle=True, seed=seed)
    return list(split["train"]), list(split["test"])


class StopOnStrings(StoppingCriteria):
    """A ``transformers`` stopping criterion: a sequence is done once its generated text contains a stop string.

    Each step decodes only the last few generated tokens (enough characters for the longest stop string), so the
    check is cheap and works with any tokenizer (``generate(stop_strings=...)`` needs a vocabulary it can map to
    strings, which some tokenizers do not give).
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str], prompt_length: int) -> None:
        self.tokenizer, self.stop, self.start = tokenizer, list(stop), prompt_length
        self.window = max(len(s) for s in self.stop) + 2  # tokens: each holds at least one character

    def __call__(self, input_ids: torch.Tensor, scores: Any = None, **kwargs: Any) -> torch.Tensor:
        tails = input_ids[:, max(self.start, input_ids.shape[1] - self.window) :]
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts], device=input_ids.device)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string (the stop string excluded)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


class CausalCollator:
    """Right-pads ``input_ids`` (pad id), ``labels`` (-100) and builds ``attention_mask``."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        n = max(len(x["input_ids"]) for x in items)
        ids = torch.full((len(items), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(items), n), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(items), n), dtype=torch.long)
        for i, x in enumerate(items):
            k = len(x["input_ids"])
            ids[i, :k] = torch.tensor(x["input_ids"])
            labels[i, :k] = torch.tensor(x["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    batch_size: int = 8,
    max_new_tokens: int = 256,
    device: torch.device | None = None,
    progress: bool = True,
    desc: str = "generate",
    num_beams: int = 1,
    stop: Sequence[str] = (),
    synced_gpus: bool = False,
) -> list[str]:
    """Greedy (``num_beams=1``) or beam-search completions of ``prompts`` (new text only), in order; batches are
    left-padded; generation of a sequence ends at ``eos`` or at any of the ``stop`` strings, which are cut off.
    ``synced_gpus``: every process runs forward passes until all have finished (a sharded model's forward is a
    collective).

    Prompts are sorted by length so that each batch pads little; the results are put back in input order.
    """
    from tqdm.auto import tqdm

    device = device or next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, unit="ex")
    start = time.perf_counter()
    try:
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
            extra: dict[str, Any] = {}
            if stop:
                extra["stopping_criteria"] = StoppingCriteriaList(
                    [StopOnStrings(tokenizer, stop, enc["input_ids"].shape[1])]
                )
            gen = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=num_beams,
                use_cache=True,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                temperature=None,
                top_p=None,
                top_k=None,
                synced_gpus=synced_gpus,
                **extra,
            )
            new = gen[:, enc["input_ids"].shape[1] :]
            for i, text in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True)):
                out[i] = cut_at_stop(text, stop)
            bar.update(len(idx))
            bar.set_postfix(ex_per_s=f"{bar.n / (time.perf_counter() - start):.2f}")
    finally:
        bar.close()
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def generate_sharded(accelerator: Any, model: Any, tokenizer: Any, prompts: Sequence[str], **kw: Any) -> list[str]:
    """:func:`generate` with the prompts split across processes and the completions gathered in order.

    A sharded (FSDP) model runs a collective in every forward pass, so there every process takes the same number
    of prompts (the short shards repeat their last one, whose copy is dropped) and generates in step with the
    others (``synced_gpus``)."""
    n, rank = accelerator.num_processes, accelerator.process_index
    if n == 1:
        return generate(accelerator.unwrap_model(model), tokenizer, prompts, device=accelerator.device, **kw)
    from accelerate.utils import gather_object

    from ..sharding import is_sharded

    mine = list(range(rank, len(prompts), n))
    sharded = is_sharded(model)
    padded = list(mine)
    while sharded and len(padded) < math.ceil(len(prompts) / n):  # as many prompts as process 0
        padded.append(mine[-1] if mine else 0)
    texts = generate(
        accelerator.unwrap_model(model),
        tokenizer,
        [prompts[i] for i in padded],
        device=accelerator.device,
        **{**kw, "progress": kw.get("progress", True) and rank == 0, "synced_gpus": sharded},
    )
    pairs = gather_object(list(zip(mine, texts[: len(mine)])))
    out = [""] * len(prompts)
    for i, t in pairs:
        out[i] = t
    return out


def complete(
    prompts: Sequence[str],
    max_new_tokens: int,
    *,
    accelerator: Any,
    model: Any,
    tokenizer: Any,
    batch_size: int,
    progress: bool,
    desc: str,
    num_beams: int = 1,
    stop: Sequence[str] = (),
    generate_fn: Any = None,
) -> list[str]:
    """Completions of ``prompts`` from ``generate_fn(prompts, max_new_tokens)`` (e.g. vLLM, which applies the same
    stop strings) when given, else from :func:`generate_sharded` (transformers, left-padded batches)."""
    if generate_fn is not None:
        return [cut_at_stop(t, stop) for t in generate_fn(prompts, max_new_tokens)]
    return generate_sharded(
        accelerator,
        model,
        tokenizer,
        prompts,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        progress=progress,
        desc=desc,
        num_beams=num_beams,
        stop=stop,
    )


def read_records(path: str, limit: int | None = None, require: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The records of a JSON (a list of objects) or JSONL file (UTF-8, a byte-order mark allowed). A missing
    file is ``FileNotFoundError``; bad encoding, malformed JSON (with its line), a record that is not an object or
    lacks one of the ``require`` fields, and a file without records are a ``ValueError`` naming the file."""
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from None
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    else:
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: not a JSON object per line (JSONL): {e.msg}") from None
    if not rows:
        raise ValueError(f"{path}: no records (the file is empty or an empty list)")
    rows = rows[:limit] if limit else rows
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: record {i} is a JSON {type(row).__name__}, not an object")
        missing = [k for k in require if k not in row]
        if missing:
            raise ValueError(f"{path}: record {i} lacks the field(s) {', '.join(missing)}; it has {', '.join(row)}")
    return rows
