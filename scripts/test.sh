#!/usr/bin/env bash
# Set up (if needed; with the tfds extra, so the tensorflow-datasets path is tested too) and run
# the whole check: ruff lint, ruff format check, pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" dev,tfds,onnx,search
echo "[test] ruff check"
ruff check .
echo "[test] ruff format --check"
ruff format --check .
echo "[test] pytest"
python -m pytest -q --durations=30 "$@"
