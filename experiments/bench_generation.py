"""Batched generation speed: examples per second at batch 1 and batch 8 (and more), side by side in one run.

SmolLM2-135M (embedded, converted once from GGUF) on GSM8K prompts (the shared test file, or built-in problems),
greedy, left-padded, KV cache; prints examples/s, new tokens/s and the ratio to batch 1, and how many
completions differ from batch 1's.

    python experiments/bench_generation.py --n 32 --max-new-tokens 128 --batch-sizes 1,8
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FALLBACK = [
    "Tom has 3 apples and buys 5 more. How many apples does he have?",
    "A book costs $12. How much do 4 books cost?",
    "Sara ran 2 miles on Monday and 3 times as far on Tuesday. How far did she run in all?",
    "There are 24 students in 4 equal groups. How many students are in each group?",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=32, help="number of prompts")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-sizes", default="1,8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gsm8k", default=str(ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("LORAXS_ROOT", str(ROOT))
    from omegaconf import OmegaConf
    from transformers.utils import logging as hf_logging

    from loraxs.models import causal_lm_path, load_causal_lm, load_tokenizer
    from loraxs.tasks.generation import ensure_pad_token, generate
    from loraxs.tasks.math import prompt

    hf_logging.set_verbosity_error()
    path = causal_lm_path(OmegaConf.load(ROOT / "configs" / "model" / "smollm2_135m.yaml"), ROOT / "model_checkpoints")
    tok, model = load_tokenizer(path), load_causal_lm(path)
    ensure_pad_token(tok)
    if Path(args.gsm8k).is_file():
        questions = [json.loads(x)["question"] for x in Path(args.gsm8k).read_text().splitlines()[: args.n]]
    else:
        questions = (FALLBACK * args.n)[: args.n]
    prompts = [prompt(q) for q in questions]
    results = {}
    for b in [int(x) for x in args.batch_sizes.split(",")]:
        t = time.perf_counter()
        texts = generate(model, tok, prompts, batch_size=b, max_new_tokens=args.max_new_tokens, progress=False)
        dt = time.perf_counter() - t
        new_tokens = sum(len(tok(x, add_special_tokens=False)["input_ids"]) for x in texts)
        results[b] = (dt, texts, new_tokens)
    base_dt, base_texts, _ = results[min(results)]
    print(
        f"SmolLM2-135M, CPU, {args.threads} threads, {len(prompts)} GSM8K prompts, max_new_tokens {args.max_new_tokens}"
    )
    print(f"{'batch':>6}{'seconds':>10}{'ex/s':>8}{'new tok/s':>11}{'x batch 1':>11}{'differ':>8}")
    for b, (dt, texts, n_tok) in results.items():
        differ = sum(a != c for a, c in zip(texts, base_texts))
        print(f"{b:>6}{dt:>10.1f}{len(prompts) / dt:>8.2f}{n_tok / dt:>11.1f}{base_dt / dt:>11.2f}{differ:>8}")


if __name__ == "__main__":
    main()
