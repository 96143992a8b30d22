#!/usr/bin/env bash
# LoRA-XS math (official run_math_tuning.sh): Mistral-7B-v0.1 and Gemma-7B, r = 64, MetaMathQA train[:100000] ->
# GSM8K and MATH (the final model). Hub, GPUs.
#   bash scripts/table_loraxs_math.sh [--dry-run] [extra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh "$@"
T=loraxs_math
grid experiment=math_loraxs model=mistral_7b,gemma_7b table=$T
report $T
finish
