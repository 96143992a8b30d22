#!/usr/bin/env bash
# MiniLM (embedded, CPU) on real SST-2: loraxs r=16, lora r=8 and full fine-tuning on the first 4,000
# training rows, 3 epochs, evaluated on the full dev set (872). LoRA-XS uses lr 5e-3 for R on MiniLM (the
# task file's 1e-3 is the RoBERTa-large recipe; with it MiniLM reached 0.79). Needs the GLUE tsv files:
#   GLUE_DIR=../shared/data/glue bash scripts/minilm_sst2.sh
set -euo pipefail
cd "$(dirname "$0")/.."
GLUE_DIR="${GLUE_DIR:-../shared/data/glue}"
PY="${PY:-.venv/bin/python}"
common=(task=sst2 "task.data_dir=$GLUE_DIR" task.max_train_samples=4000 task.epochs=3 logger=none "$@")
"$PY" experiments/train.py "${common[@]}" adapter=loraxs rank=16 task.lr=5e-3
"$PY" experiments/train.py "${common[@]}" adapter=lora rank=8 task.head_lr=5e-3
"$PY" experiments/train.py "${common[@]}" adapter=full
