#!/usr/bin/env bash
# The LoRA repository's other tables, with every method on the same footing (full fine-tuning, LoRA, LoRA-XS):
#   lora_lm         GPT-2 medium and large on WikiText-103 (token perplexity, sliding window 1024 / stride 512),
#                   enwik8 and text8 (bits per character): full FT, LoRA r4 (alpha 32, the LoRA paper's GPT-2
#                   rank and alpha), LoRA-XS r16                                                    18 runs
#   lora_glue       GLUE: scripts/table_lora_glue.sh (the LoRA paper's Table 2 recipes)
#   lora_superglue  DeBERTa-v3-base and RoBERTa-large on BoolQ, CB, COPA, MultiRC, RTE, WiC, WSC, 3 seeds: full FT
#                   (lr 2e-5), LoRA r8 (lr 4e-4), LoRA-XS r16 (lr 1e-3), heads at the same lr   126 runs
#   lora_squad      DeBERTa-v3-base and RoBERTa-large on SQuAD 1.1 and 2.0: the same three methods  12 runs
# No paper recipe is in METHODS.md for these tasks: the task files' values are this toolkit's defaults (stated in
# each file); the learning rates are the ones above. The reported model is the final one (no epoch is chosen on
# the validation sets, which are these benchmarks' test sets). Hub data and models, GPUs.
#   bash scripts/table_lora_tasks.sh [--dry-run] [extra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh "$@"
lm=(model=gpt2_medium,gpt2_large task=wikitext103,enwik8,text8 table=lora_lm trainer.mixed_precision=bf16)
grid "${lm[@]}" adapter=full task.lr=2e-5
grid "${lm[@]}" adapter=lora rank=4 adapter.alpha=32 task.lr=2e-4
grid "${lm[@]}" adapter=loraxs rank=16 task.lr=2e-3
sg=(model=deberta_v3_base,roberta_large task=glob\(superglue_*\) seed=0,1,2 table=lora_superglue)
grid "${sg[@]}" adapter=full task.lr=2e-5 task.head_lr=2e-5
grid "${sg[@]}" adapter=lora rank=8 task.lr=4e-4 task.head_lr=4e-4
grid "${sg[@]}" adapter=loraxs rank=16 task.lr=1e-3 task.head_lr=1e-3
sq=(model=deberta_v3_base,roberta_large task=squad_v1,squad_v2 table=lora_squad)
grid "${sq[@]}" adapter=full task.lr=2e-5 task.head_lr=2e-5
grid "${sq[@]}" adapter=lora rank=8 task.lr=4e-4
grid "${sq[@]}" adapter=loraxs rank=16 task.lr=1e-3
report lora_lm
report lora_superglue
report lora_squad
finish
