#!/usr/bin/env bash
# LoRA-SB paper, GLUE table (RoBERTa-large; METHODS.md §4), all 8 rows on CoLA, RTE, MRPC, STS-B, QNLI, SST-2 with
# the official LoRA-SB recipe (batch 128, 30 epochs, warm-up 0.06, seed 42), each row over the lr grid
# {1e-4, 5e-4, 1e-3, 5e-3}, reported as max over epochs, then the best lr:
#  - LoRA-SB r = 8, 16, 24 (official); LoRA-XS r = 8, 16, 24 and LoRA r = 8 (no official baseline recipe: the
#    LoRA-SB recipe with each method's own init: LoRA-XS alpha 16 and the scikit-learn SVD, LoRA alpha 16);
#  - full fine-tuning: the LoRA-SB recipe over lr {1e-5, 2e-5, 3e-5} (no official recipe; the adapter lrs diverge).
# 6 tasks x (3 + 3 + 1) x 4 lr + 6 x 3 = 186 runs. Hub GLUE (or task.data_dir=...), GPUs.
#   bash scripts/table_lorasb_glue.sh [--dry-run] [extra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh "$@"
T=lorasb_glue
tasks=cola,rte,mrpc,stsb,qnli,sst2
grid experiment=glue_lorasb sweep=glue_lorasb_grid task=$tasks table=$T
grid experiment=glue_lorasb sweep=glue_lorasb_grid adapter=loraxs adapter.alpha=16 adapter.svd_backend=sklearn \
  task=$tasks table=$T
grid experiment=glue_lorasb adapter=lora rank=8 adapter.alpha=16 task.lr=1e-4,5e-4,1e-3,5e-3 task=$tasks table=$T
grid experiment=glue_lorasb adapter=full task.lr=1e-5,2e-5,3e-5 task=$tasks table=$T
report $T
finish
