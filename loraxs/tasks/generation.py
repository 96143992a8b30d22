"""Causal-LM pieces shared by the instruction-tuning tasks: encoding, collation, batched greedy generation.

Training examples are ``prompt + response + eos``; with ``train_on_inputs=False`` (the default) the prompt
tokens get label -100, so the loss is on the response only. Generation pads on the left (so every prompt ends
at the last position), decodes greedily with the KV cache, and returns only the new text.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

IGNORE = -100


def ensure_pad_token(tokenizer: Any) -> None:
    """Decoders often have no pad token: use eos (masked out of the loss and the attention anyway)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def encode(tokenizer: Any, prompt: str, response: str, max_length: int, train_on_inputs: bool = False) -> dict:
    """``input_ids`` and ``labels`` of ``prompt + response + eos``, truncated to ``max_length`` tokens."""
    p = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (p + r)[:max_length]
    labels = list(ids) if train_on_inputs else ([IGNORE] * len(p) + r)[:max_length]
    return {"input_ids": ids, "labels": labels}


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
) -> list[str]:
    """Greedy completions of ``prompts`` (new text only), in order; batches are left-padded.

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
            gen = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                use_cache=True,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                temperature=None,
                top_p=None,
                top_k=None,
            )
            new = gen[:, enc["input_ids"].shape[1] :]
            for i, text in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True)):
                out[i] = text
            bar.update(len(idx))
            bar.set_postfix(ex_per_s=f"{bar.n / (time.perf_counter() - start):.2f}")
    finally:
        bar.close()
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def generate_sharded(accelerator: Any, model: Any, tokenizer: Any, prompts: Sequence[str], **kw: Any) -> list[str]:
    """:func:`generate` with the prompts split across processes and the completions gathered in order."""
    n, rank = accelerator.num_processes, accelerator.process_index
    if n == 1:
        return generate(accelerator.unwrap_model(model), tokenizer, prompts, device=accelerator.device, **kw)
    from accelerate.utils import gather_object

    mine = list(range(rank, len(prompts), n))
    texts = generate(
        accelerator.unwrap_model(model),
        tokenizer,
        [prompts[i] for i in mine],
        device=accelerator.device,
        **{**kw, "progress": kw.get("progress", True) and rank == 0},
    )
    pairs = gather_object(list(zip(mine, texts)))
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
    generate_fn: Any = None,
) -> list[str]:
    """Completions of ``prompts`` from ``generate_fn(prompts, max_new_tokens)`` (e.g. vLLM) when given, else from
    :func:`generate_sharded` (transformers, left-padded batches across processes)."""
    if generate_fn is not None:
        return generate_fn(prompts, max_new_tokens)
    return generate_sharded(
        accelerator,
        model,
        tokenizer,
        prompts,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        progress=progress,
        desc=desc,
    )


def read_records(path: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Records of a JSON (list) or JSONL file; a clear error for a missing or unreadable file."""
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    text = p.read_text()
    try:
        rows = (
            json.loads(text)
            if text.lstrip().startswith("[")
            else [json.loads(x) for x in text.splitlines() if x.strip()]
        )
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is neither a JSON list nor JSON lines ({e})") from None
    return rows[:limit] if limit else rows
