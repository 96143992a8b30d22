#!/usr/bin/env bash
# MiniLM (embedded, CPU) on real SST-2: loraxs r=16, lora r=8 and full fine-tuning on the first 4,000
# training rows, 3 epochs, evaluated on the full dev set (872). Needs the GLUE tsv files:
#   GLUE_DIR=../shared/data/glue bash scripts/minilm_sst2.sh
set -euo pipefail
cd "$(dirname "$0")/.."
GLUE_DIR="${GLUE_DIR:-../shared/data/glue}"
PY="${PY:-.venv/bin/python}"
common=(task=sst2 "task.data_dir=$GLUE_DIR" task.max_train_samples=4000 task.epochs=3 logger=none "$@")
"$PY" experiments/train.py "${common[@]}" adapter=loraxs rank=16
"$PY" experiments/train.py "${common[@]}" adapter=lora rank=8
"$PY" experiments/train.py "${common[@]}" adapter=full
