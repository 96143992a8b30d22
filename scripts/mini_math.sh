#!/usr/bin/env bash
# CPU mini version of the math tables (experiment=mini_math: SmolLM2-135M, GSM8K train as MetaMathQA, 256 examples,
# 1 epoch; the first 48 GSM8K test problems): LoRA-XS r16 / r64 (alpha = r, lr 4e-3, the LoRA-XS recipe's), LoRA-SB
# r16 / r64 (lr 1e-4, n = 50 in batches of 3, LoRA-SB's), LoRA r8 (alpha 16, lr 2e-4) = 5 runs, under an hour on two
# cores. The table: the final model (results/mini/mini_math.*).
#   bash scripts/mini_math.sh [--dry-run] [extra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="${RESULTS:-results/mini}"
source scripts/lib.sh "$@"
T=mini_math
common=(experiment=mini_math '~task.eval_sets.math' table=$T)
grid "${common[@]}" adapter=loraxs rank=16,64 'adapter.alpha=${rank}' task.lr=4e-3
grid "${common[@]}" adapter=lorasb rank=16,64 task.lr=1e-4 adapter.lorasb_n_samples=50 adapter.lorasb_batch_size=3
grid "${common[@]}" adapter=lora rank=8 adapter.alpha=16 task.lr=2e-4
report $T
finish
