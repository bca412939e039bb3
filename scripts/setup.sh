#!/usr/bin/env bash
# Create .venv and install mlx with its test extras. Idempotent.
#
# PyTorch: a CPU build is preferred when none is installed, so a laptop does not download a
# multi-GB CUDA build; set MLX_TORCH=skip to keep whatever torch you installed yourself (a GPU box).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
if [ "${MLX_TORCH:-}" != "skip" ] && ! python -c "import torch" 2>/dev/null; then
  # 2.13.0 CPU lies on this project's machines; elsewhere the CPU wheel index serves it.
  python -m pip install -q "torch==2.13.0" 2>/dev/null \
    || python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
python -m pip install -q -e ".[test]"
