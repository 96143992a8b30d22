#!/usr/bin/env bash
# LoRA-XS GLUE (RoBERTa-large, ranks 4-25, seeds 0-4; METHODS.md §3, official LoRA-XS scripts):
#  1. CoLA / SST-2 / QNLI from the pretrained model: 6 ranks x 3 lr x 3 head lr x 5 seeds = 270 runs per task;
#  2. one MNLI run per rank (the official repo ships no MNLI script: its CoLA/SST-2/QNLI recipe, lr 1e-3, head lr
#     5e-3, seed 0), its adapter exported to model_checkpoints/RoBERTa-large/MNLI/rank_<r> as the official README
#     expects;
#  3. MRPC / RTE / STS-B from the MNLI adapter of each rank: 6 ranks x 2 lr x 2 head lr x 5 seeds = 120 runs per task.
# Then the table (per seed the best of the grid, median over seeds). Hub GLUE (or task.data_dir=...), GPUs.
#   bash scripts/table_loraxs_glue.sh [--dry-run] [extra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh "$@"
T=loraxs_glue
grid experiment=glue_loraxs sweep=glue_loraxs_grid task=cola,sst2,qnli table=$T
grid experiment=glue_loraxs task=mnli rank=4,8,12,16,20,25 seed=0 table=$T \
  'export_to=${paths.cache_dir}/RoBERTa-large/MNLI/rank_${rank}'
grid experiment=glue_loraxs sweep=glue_loraxs_mnli_grid task=mrpc,rte,stsb table=$T
report $T
finish
