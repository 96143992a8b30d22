#!/usr/bin/env bash
# LoRA paper, GLUE (Table 2): LoRA r = 8 on query/value of RoBERTa-base and -large, 8 tasks x 5 seeds each, with the
# official per-task recipes of microsoft/LoRA examples/NLU (experiment=glue_lora_paper); the median over seeds of
# the best epoch. MNLI first: seed 0's adapter is exported to model_checkpoints/<model>/MNLI/lora_r8, which MRPC,
# RTE and STS-B start from (as the official scripts' --lora_path). 80 runs. Hub GLUE (or task.data_dir=...), GPUs.
#   bash scripts/table_lora_glue.sh [--dry-run] [extra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh "$@"
T=lora_glue
for model in roberta_base roberta_large; do
  grid experiment=glue_lora_paper model=$model task=mnli seed=0 table=$T \
    "export_to=\${paths.cache_dir}/$model/MNLI/lora_r8"
  grid experiment=glue_lora_paper model=$model task=mnli seed=1,2,3,4 table=$T
  grid experiment=glue_lora_paper model=$model task=sst2,cola,qnli,qqp seed=0,1,2,3,4 table=$T
  grid experiment=glue_lora_paper model=$model task=mrpc,rte,stsb seed=0,1,2,3,4 table=$T \
    "init_from=\${paths.cache_dir}/$model/MNLI/lora_r8"
done
report $T
finish
