#!/usr/bin/env bash
# LoRA-SB paper, GLUE table (RoBERTa-large; METHODS.md §4): LoRA-XS and LoRA-SB at r = 8, 16, 24, LoRA r = 8 and
# full fine-tuning on CoLA, RTE, MRPC, STS-B, QNLI, SST-2. Needs the Hub (or task.data_dir) and a GPU.
#   bash scripts/table_glue_lorasb_paper.sh [extra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
tasks=cola,rte,mrpc,stsb,qnli,sst2
"$PY" experiments/train.py -m experiment=glue_lorasb task=$tasks rank=8,16,24 task.lr=1e-4,5e-4,1e-3,5e-3 "$@"
"$PY" experiments/train.py -m experiment=glue_loraxs task=$tasks rank=8,16,24 "$@"
"$PY" experiments/train.py -m experiment=glue_loraxs adapter=lora task=$tasks rank=8 "$@"
"$PY" experiments/train.py -m experiment=glue_loraxs adapter=full task=$tasks "$@"
