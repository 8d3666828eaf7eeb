#!/usr/bin/env bash
# The paper's whole reproduction protocol on one accelerator, from no records, in a fixed
# time budget (default 540 s): records in runs/reproduction-gpu, snapshotted with the timing
# and the comparison against the committed CPU records to benchmarks/results/reproduction-gpu.
# Options go to benchmarks/gpu_reproduction.py (--shards, --budget, --cells, --n-images).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_venv.sh dev
python benchmarks/gpu_reproduction.py "$@"
