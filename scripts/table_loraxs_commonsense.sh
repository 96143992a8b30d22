#!/usr/bin/env bash
# LoRA-XS commonsense (official run_commonsense_tuning.sh): Llama-3-8B and Llama-2-7B, r = 32 (alpha 64), the
# validation-selected checkpoint on the eight benchmarks. Needs task.train_path=<commonsense_170k.json> and
# task.test_dir=<LLM-Adapters dataset/> (pass them as extra overrides) and GPUs.
#   bash scripts/table_loraxs_commonsense.sh [--dry-run] task.train_path=... task.test_dir=...
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh "$@"
T=loraxs_commonsense
grid experiment=commonsense_loraxs model=llama3_8b,llama2_7b table=$T
report $T
finish
