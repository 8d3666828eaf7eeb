#!/usr/bin/env bash
# Set up (if needed) and run the main job: a paper-setting one-pixel attack on an embedded
# default model (never a download; without local CIFAR-10 it uses the bundled digits). The last
# line names the report and figures; a second run reuses the finished run and says so. Extra
# arguments go to `onepixel demo` (see onepixel demo --help), e.g. --out runs/other.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" dev
onepixel demo "$@"
