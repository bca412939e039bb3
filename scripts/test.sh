#!/usr/bin/env bash
# Set up a virtual environment (CPU PyTorch where this machine has it on disk) and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pytest -q "$@"
