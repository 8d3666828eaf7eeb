#!/usr/bin/env bash
# The accelerator suite in one command (about 8 minutes on one GPU): raw JSON in
# benchmarks/results/gpu_suite.json (and gpu_suite_protocol.json for the peers).
# Set up first (the peers need the `peers` extra: torch, torchattacks, ART).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_venv.sh dev,onnx,search
python benchmarks/gpu_suite.py --budget "${SUITE_BUDGET:-480}" "$@"
