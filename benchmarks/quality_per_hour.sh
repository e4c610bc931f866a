#!/usr/bin/env bash
# Quality per hour of training on this machine, for the choice of the default model's
# architecture: trains the width-32, 8-block net and NAFSSR-T from scratch with the same recipe
# (benchmarks/quality_per_hour/*.yaml: batch 4, L1, lr 1e-3, EMA, one thread) for the same
# time, validates both on data/val_hr (build it first: docs/data.md) and prints one line each.
#
#   bash benchmarks/quality_per_hour.sh [MINUTES]      # default 15 per architecture
set -euo pipefail
minutes="${1:-15}"
python="${PYTHON:-python}"
here="$(cd "$(dirname "$0")" && pwd)"
for arch in w32x8 t; do
    run="runs/quality_per_hour/$arch"
    rm -rf "$run"
    "$python" -m stereosr train "$here/quality_per_hour/$arch.yaml" \
        --set "train.stop_after_minutes=$minutes" > /dev/null
    "$python" - "$run" "$arch" "$minutes" <<'PY'
import csv, pathlib, sys
run, arch, minutes = sys.argv[1:]
val = list(csv.DictReader(open(f"{run}/val.csv")))[-1]
# the pause checkpoint is named after the last iteration trained
iters = max(int(p.stem.split("_")[1]) for p in pathlib.Path(run, "checkpoints").glob("iter_*"))
print(f"{arch:6s} {minutes} min: {iters} iterations "
      f"({iters / (60 * float(minutes)):.2f} it/s), validation "
      f"{float(val['psnr']):.3f} dB / {float(val['ssim']):.4f} on {val['pairs']} pairs")
PY
done
