#!/usr/bin/env bash
# CPU mini version of the GLUE tables (experiment=mini_glue: all-MiniLM-L6-v2, 640 training examples, 2 epochs,
# 400 dev examples) on CoLA, SST-2 and STS-B from ../shared/data/glue, 3 seeds each:
#   full fine-tuning (lr 5e-5), LoRA r8 (lr 1e-3), LoRA-XS r4/8/16 with SVD and with random A, B (lr 5e-3),
#   LoRA-SB r8/16 (its lr grid cut to {5e-4, 5e-3}), every head at lr 5e-3 (a fresh head learns little in 40 steps
#   at the body's lr; LoRA-SB's official recipe uses one lr for both) = 108 runs, about 55 minutes on two cores.
# The table: per seed the best dev epoch (of the lr grid for LoRA-SB), median over the 3 seeds (results/mini/).
#   bash scripts/mini_glue.sh [--dry-run] [extra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="${RESULTS:-results/mini}"
source scripts/lib.sh "$@"
T=mini_glue
common=(experiment=mini_glue task=cola,sst2,stsb seed=0,1,2 table=$T)
grid "${common[@]}" adapter=loraxs,loraxs_random rank=4,8,16 task.lr=5e-3 task.head_lr=5e-3
grid "${common[@]}" adapter=lorasb rank=8,16 task.lr=5e-4,5e-3 task.head_lr=5e-3
grid "${common[@]}" adapter=lora rank=8 task.lr=1e-3 task.head_lr=5e-3
grid "${common[@]}" adapter=full task.lr=5e-5 task.head_lr=5e-3
report $T
finish
