#!/usr/bin/env bash
# LoRA-SB paper, math table (METHODS.md §4): Mistral-7B, LoRA-XS and LoRA-SB at r = 32, 64, 96 on MetaMathQA,
# evaluated on GSM8K and MATH. Needs the Hub and GPUs (use accelerate launch --multi_gpu for several).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
"$PY" experiments/train.py -m experiment=math_lorasb rank=32,64,96 "$@"
"$PY" experiments/train.py -m experiment=math_lorasb adapter=loraxs adapter.alpha='${rank}' rank=32,64,96 "$@"
