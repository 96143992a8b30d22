#!/usr/bin/env bash
# CPU mini version of the commonsense tables (experiment=mini_commonsense: SmolLM2-135M, the partial Commonsense170K,
# 256 examples, 1 epoch; 16 examples of each of the 8 test sets): LoRA-XS r16 / r64 (alpha = r, lr 2e-3), LoRA-SB
# r16 / r64 (lr 2e-3, n = 170 in batches of 10, LoRA-SB's), LoRA r8 (alpha 16, lr 2e-4) = 5 runs, under an hour on
# two cores. The table: the final model (results/mini/mini_commonsense.*).
#   bash scripts/mini_commonsense.sh [--dry-run] [extra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="${RESULTS:-results/mini}"
source scripts/lib.sh "$@"
T=mini_commonsense
common=(experiment=mini_commonsense table=$T)
grid "${common[@]}" adapter=loraxs rank=16,64 'adapter.alpha=${rank}' task.lr=2e-3
grid "${common[@]}" adapter=lorasb rank=16,64 task.lr=2e-3 adapter.lorasb_n_samples=170 adapter.lorasb_batch_size=10
grid "${common[@]}" adapter=lora rank=8 adapter.alpha=16 task.lr=2e-4
report $T
finish
