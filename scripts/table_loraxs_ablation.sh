#!/usr/bin/env bash
# LoRA-XS ablation, SVD vs random (Kaiming-uniform) A and B: the official CoLA / SST-2 / QNLI grid for both inits
# (2 x 270 runs per task; the SVD half is the LoRA-XS GLUE table's own runs, reused when they are there).
#   bash scripts/table_loraxs_ablation.sh [--dry-run] [extra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh "$@"
T=loraxs_ablation
grid experiment=glue_loraxs sweep=glue_loraxs_grid adapter=loraxs,loraxs_random task=cola,sst2,qnli table=$T
report $T
finish
