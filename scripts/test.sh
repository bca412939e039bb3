#!/usr/bin/env bash
# Set up a virtual environment (CPU PyTorch where this machine has it on disk) and run the tests.
#   scripts/test.sh            the whole suite (at most 8 minutes on 2 idle cores)
#   scripts/test.sh --fast     without the tests marked slow (at most 2 minutes): the inner loop
# Other arguments go to pytest, e.g. scripts/test.sh --fast tests/test_embed.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for arg in "$@"; do
  if [ "$arg" = "--fast" ]; then args+=(-m "not slow"); else args+=("$arg"); fi
done
bash scripts/setup.sh
. .venv/bin/activate
python -m pytest -q "${args[@]}"
