# Shared by the table scripts (sourced, not run). Usage inside a script:
#   source scripts/lib.sh "$@"; grid <overrides...>; ...; report <table>; finish
# Options (first argument): --dry-run lists every job with its optimizer steps and runs nothing.
# Environment: PY (python, default .venv/bin/python), OUT (run output folder, default outputs),
# RESULTS (report folder, default results). Extra arguments are appended to every train.py call
# (e.g. hydra/launcher=slurm, trainer.mixed_precision=bf16).
# Every grid skips runs that already finished (same config and seed) and resumes interrupted ones
# (skip_finished=true), so re-running a script redoes only what failed or did not finish; a failed
# job is recorded in its run folder and the grid goes on.
PY="${PY:-.venv/bin/python}"
OUT="${OUT:-outputs}"
RESULTS="${RESULTS:-results}"
DRY=()
if [ "${1:-}" = "--dry-run" ]; then
  DRY=(dry_run=true)
  shift
fi
EXTRA=("$@")
STATUS=0

grid() {
  "$PY" experiments/train.py -m "$@" skip_finished=true "paths.output_dir=$OUT" "${DRY[@]}" "${EXTRA[@]}" || STATUS=1
}

report() {
  if [ ${#DRY[@]} -eq 0 ]; then
    "$PY" experiments/report.py "table=$1" "runs=$OUT" "out=$RESULTS/$1" || STATUS=1
  fi
}

finish() {
  [ "$STATUS" -eq 0 ] || echo "some jobs failed: their run folders say why (metrics.json status, train.log); re-run to redo them" >&2
  exit "$STATUS"
}
