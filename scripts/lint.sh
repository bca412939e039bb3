#!/usr/bin/env bash
# Lint, format and type check (ruff and mypy, both configured in pyproject.toml). Fails on any finding.
# `ruff format --check` passes once the tree has been formatted (one commit: `ruff format .`).
set -euo pipefail
cd "$(dirname "$0")/.."
RUFF=${RUFF:-$( [ -x .venv/bin/ruff ] && echo .venv/bin/ruff || echo ruff )}
"$RUFF" check .
"$RUFF" format --check .
MYPY=${MYPY:-$( [ -x .venv/bin/mypy ] && echo .venv/bin/mypy || echo mypy )}
"$MYPY"  # the packages listed under [tool.mypy]
