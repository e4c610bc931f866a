#!/usr/bin/env bash
# Set up (if needed) and run the demo: x4 stereo super-resolution of the Middlebury
# "Motorcycle" pair with the packaged model, scores and a comparison figure in demo_out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
exec .venv/bin/stereosr demo -o demo_out --overwrite "$@"
