#!/usr/bin/env bash
# SmolLM2-135M (embedded GGUF, CPU) on the real GSM8K and commonsense files:
#  1. the base model on the first 50 GSM8K test problems, batch 8 and batch 1 (left padding: same answers);
#  2. a short LoRA-XS r=16 run on GSM8K train reshaped to MetaMathQA fields, evaluated on 50 test problems;
#  3. a short LoRA-XS r=16 run on the partial Commonsense170K, evaluated on a slice of each of the 8 test sets.
#   DATA=../shared/data bash scripts/smollm2_checks.sh [out folder]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data}"
OUT="${1:-outputs/smollm2_checks}"
PY="${PY:-.venv/bin/python}"
gsm=(model=smollm2_135m task=metamath "task.eval_sets.gsm8k.path=$DATA/gsm8k/test.jsonl" "~task.eval_sets.math"
     task.max_eval_samples=50 task.eval_sets.gsm8k.max_new_tokens=256)

echo "== 1. base model, GSM8K[:50], batch 8 then batch 1"
"$PY" experiments/eval.py "${gsm[@]}" task.eval_batch_size=8 "out=$OUT/base_b8"
"$PY" experiments/eval.py "${gsm[@]}" task.eval_batch_size=1 "out=$OUT/base_b1"
"$PY" - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = {b: [json.loads(x) for x in open(f"{out}/base_{b}/predictions/gsm8k.jsonl")] for b in ("b8", "b1")}
same = sum(a["extracted"] == b["extracted"] for a, b in zip(rows["b8"], rows["b1"]))
m = {b: json.load(open(f"{out}/base_{b}/metrics.json")) for b in ("b8", "b1")}
print(f"batch 8 vs batch 1: same extracted answer on {same}/50; accuracy {m['b8']['gsm8k/accuracy']:.3f} / "
      f"{m['b1']['gsm8k/accuracy']:.3f}; examples/s {m['b8']['examples_per_s']} / {m['b1']['examples_per_s']} "
      f"({m['b8']['examples_per_s'] / m['b1']['examples_per_s']:.2f}x)")
PY

echo "== 2. LoRA-XS r=16 on GSM8K train (MetaMathQA fields), 50 test problems"
"$PY" experiments/train.py "${gsm[@]}" "task.train_path=$DATA/gsm8k/train.jsonl" task.max_train_samples=200 \
  task.max_length=192 task.epochs=1 task.batch_size=4 task.eval_batch_size=8 adapter=loraxs rank=16 \
  adapter.alpha=16 logger=none trainer.log_every=5 run_name=smollm2_gsm8k_loraxs "paths.output_dir=$OUT"

echo "== 3. LoRA-XS r=16 on the partial Commonsense170K, 10 examples of each of the 8 test sets"
"$PY" experiments/train.py model=smollm2_135m task=commonsense "task.train_path=$DATA/commonsense/train" \
  "task.test_dir=$DATA/commonsense/test" task.max_train_samples=200 task.max_eval_samples=10 task.epochs=1 \
  task.batch_size=4 task.eval_batch_size=8 adapter=loraxs rank=16 adapter.alpha=16 logger=none trainer.log_every=5 \
  run_name=smollm2_commonsense_loraxs "paths.output_dir=$OUT"
