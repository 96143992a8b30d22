#!/usr/bin/env bash
# LoRA-SB paper, math table (METHODS.md §4): Mistral-7B and Gemma-2 9B x Full FT, LoRA r32, LoRA-XS and LoRA-SB
# r32/64/96 on MetaMathQA train[:50000] -> GSM8K and MATH (the final model), 16 runs. LoRA-SB: the official recipe;
# the baselines have no official recipe: the LoRA-SB recipe with LoRA-XS alpha = r and lr 1e-4 (as LoRA-SB), LoRA
# alpha = 32 and lr 2e-4, full fine-tuning lr 2e-5. Hub, GPUs (full fine-tuning of 7-9B models needs several).
#   bash scripts/table_lorasb_math.sh [--dry-run] [extra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh "$@"
T=lorasb_math
models=mistral_7b,gemma2_9b
grid experiment=math_lorasb model=$models rank=32,64,96 table=$T
grid experiment=math_lorasb model=$models adapter=loraxs 'adapter.alpha=${rank}' rank=32,64,96 table=$T
grid experiment=math_lorasb model=$models adapter=lora rank=32 adapter.alpha=32 task.lr=2e-4 table=$T
grid experiment=math_lorasb model=$models adapter=full task.lr=2e-5 table=$T
report $T
finish
