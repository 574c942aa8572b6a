#!/usr/bin/env bash
# Create .venv (Python 3.11) and install fedsnn with its pinned dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
# Re-install only when pyproject.toml changed since the last install.
stamp=.venv/.fedsnn-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet -e ".[dev,demo]"
    touch "$stamp"
fi
