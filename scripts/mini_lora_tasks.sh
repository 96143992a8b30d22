#!/usr/bin/env bash
# CPU mini versions of the LoRA repository's task tables (language modelling, SuperGLUE, SQuAD), not paper recipes:
#   mini_lm        (experiment=mini_lm) SmolLM2-135M, WikiText-2 perplexity before fine-tuning (LoRA with B = 0 and
#                  no step: the base model) and after LoRA r8 (alpha 16, lr 1e-3) and LoRA-XS r16 (alpha = r,
#                  lr 4e-3): 3 runs, about 35 minutes on two cores
#   mini_superglue (experiment=mini_superglue) all-MiniLM-L6-v2 on CB and COPA, seed 0: full fine-tuning (lr 5e-5),
#                  LoRA r8 (lr 1e-3), LoRA-XS r16 (lr 5e-3), every head at lr 5e-3: 6 runs, about 10 minutes
#   mini_squad     (experiment=mini_squad) all-MiniLM-L6-v2 on SQuAD 1.1 (the dev-set stand-in), the same three
#                  methods and learning rates, seed 0: 3 runs, about 15 minutes
# The tables: the final model in results/mini/<table>/.
#   bash scripts/mini_lora_tasks.sh [--dry-run] [extra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="${RESULTS:-results/mini}"
source scripts/lib.sh "$@"
grid experiment=mini_lm adapter=lora rank=8 trainer.max_steps=0 run_name=wikitext2_base_model table=mini_lm
grid experiment=mini_lm adapter=lora rank=8 adapter.alpha=16 task.lr=1e-3 table=mini_lm
grid experiment=mini_lm adapter=loraxs rank=16 'adapter.alpha=${rank}' task.lr=4e-3 table=mini_lm
sg=(experiment=mini_superglue task=superglue_cb,superglue_copa seed=0 table=mini_superglue task.head_lr=5e-3)
grid "${sg[@]}" adapter=full task.lr=5e-5
grid "${sg[@]}" adapter=lora rank=8 task.lr=1e-3
grid "${sg[@]}" adapter=loraxs rank=16 task.lr=5e-3
sq=(experiment=mini_squad table=mini_squad task.head_lr=5e-3)
grid "${sq[@]}" adapter=full task.lr=5e-5
grid "${sq[@]}" adapter=lora rank=8 task.lr=1e-3
grid "${sq[@]}" adapter=loraxs rank=16 task.lr=5e-3
report mini_lm
report mini_superglue
report mini_squad
finish
