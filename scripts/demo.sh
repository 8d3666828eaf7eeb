#!/usr/bin/env bash
# Set up (if needed) and run the main job: a paper-setting one-pixel attack on an embedded
# default model (no download). Extra arguments go to `onepixel demo` (see --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" dev
onepixel demo "$@"
