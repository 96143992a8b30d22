#!/usr/bin/env bash
# LoRA-SB paper, commonsense table (METHODS.md §4): Llama-3.2-3B, LoRA-SB and LoRA-XS at r = 96 on
# Commonsense170K (task.train_path=<commonsense_170k.json>), eight benchmarks (task.test_dir=<LLM-Adapters dataset/>).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
"$PY" experiments/train.py experiment=commonsense_lorasb "$@"
"$PY" experiments/train.py experiment=commonsense_lorasb adapter=loraxs adapter.alpha=96 "$@"
