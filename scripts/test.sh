#!/usr/bin/env bash
# Set up (if needed; with the tfds extra, so the tensorflow-datasets path is tested too, and the
# torch extra, so are the PyTorch targets) and run the whole check: ruff lint, ruff format
# check, pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" dev,tfds,onnx,search,torch
echo "[test] ruff check"
ruff check .
echo "[test] ruff format --check"
ruff format --check .
# One pytest worker per core (at most 4), each test file on one worker (module fixtures are
# built once): most of the suite's time is XLA compilation, which runs on one thread per
# process. ONEPIXEL_TEST_WORKERS=0 runs in one process.
WORKERS="${ONEPIXEL_TEST_WORKERS:-$(python -c 'import os; print(min(4, len(os.sched_getaffinity(0))))')}"
echo "[test] pytest ($WORKERS workers)"
if [ "$WORKERS" -gt 1 ]; then
  python -m pytest -q -n "$WORKERS" --dist loadfile --durations=30 "$@"
else
  python -m pytest -q --durations=30 "$@"
fi
