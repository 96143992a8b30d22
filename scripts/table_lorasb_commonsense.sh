#!/usr/bin/env bash
# LoRA-SB paper, commonsense table (METHODS.md §4): Llama-3.2-3B, all 8 rows (Full FT, LoRA r32, LoRA-XS and LoRA-SB
# r32/64/96) on the eight benchmarks, the final model. LoRA-SB: the official recipe; the baselines have no official
# recipe: the LoRA-SB recipe with LoRA-XS alpha = r and LoRA-SB's lr, LoRA alpha 32 and lr 2e-4, full fine-tuning
# lr 2e-5. Needs task.train_path=<commonsense_170k.json> task.test_dir=<LLM-Adapters dataset/> and GPUs.
#   bash scripts/table_lorasb_commonsense.sh [--dry-run] task.train_path=... task.test_dir=...
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh "$@"
T=lorasb_commonsense
grid experiment=commonsense_lorasb rank=32,64,96 table=$T
grid experiment=commonsense_lorasb adapter=loraxs 'adapter.alpha=${rank}' rank=32,64,96 table=$T
grid experiment=commonsense_lorasb adapter=lora rank=32 adapter.alpha=32 task.lr=2e-4 table=$T
grid experiment=commonsense_lorasb adapter=full task.lr=2e-5 table=$T
report $T
finish
