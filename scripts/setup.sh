#!/usr/bin/env bash
# Create .venv with the CPU build of PyTorch and stereosr (plus its test tools) installed.
# Usage: bash scripts/setup.sh [extras]     (extras default to "test")
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# The CPU build of torch first (constraints-cpu.txt pins it); the package accepts torch>=2.1.
.venv/bin/python -m pip install -q -c constraints-cpu.txt torch
.venv/bin/python -m pip install -q -c constraints-cpu.txt -e ".[${extras}]"
# The reference LPIPS package (its v0.1 heads files; tests compare with its code). Without
# --no-deps it would pull torchvision and a CUDA build of torch.
.venv/bin/python -m pip install -q --no-deps lpips==0.1.4
