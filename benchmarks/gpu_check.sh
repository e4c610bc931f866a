#!/usr/bin/env bash
# One-command GPU check of stereosr against the official NAFSSR code, sized for ~5 minutes on
# one H200-class GPU. Run from the repository root with the project on PYTHONPATH (set here)
# and the official code in ../shared/reference (or STEREOSR_OFFICIAL):
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine
#   bash benchmarks/gpu_check.sh --device cpu    # dry run of every step on tiny sizes (CPU)
#
# Steps (each with its own time limit; one failing step does not stop the others):
#   env        torch / GPU description
#   tests      the CUDA tests (fused attention path, precisions, training step vs the CPU)
#   infer      inference table: T and S at 128x128, 270x480, 540x960 LR in tf32, bf16, fp16
#   infer_L    NAFSSR-L at 270x480 in tf32 and bf16; infer_fp32: T at 128x128 in fp32
#   precision  PSNR / relative L2 per precision on the Motorcycle pair (packaged model)
#   train      training throughput, NAFSSR-T batch 32 of 30x90, tf32 and bf16, vs official
#   train_cli  a short `stereosr train` on the device (bf16, fused AdamW, channels-last)
#   upscale    `stereosr upscale` of the Motorcycle pair with --device (default precision)
#              and with --precision bf16
#   compile    training throughput with train.compile-style torch.compile (last: slowest;
#              SKIP_COMPILE=1 skips it; COMPILE_MODE=reduce-overhead adds CUDA graphs)
# Results: one .txt per step and summary.txt in $OUT (default ./gpu_check_out).
set -u

DEVICE=cuda
while [ $# -gt 0 ]; do  # anything unknown is refused: a typo must not start the CUDA run
  case "$1" in
    --device) [ $# -ge 2 ] || { echo "gpu_check.sh: --device needs cpu or cuda" >&2; exit 2; }
              DEVICE=$2; shift 2;;
    --device=*) DEVICE=${1#--device=}; shift;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
    *) echo "gpu_check.sh: unknown argument '$1'; use --device cpu|cuda (see --help)" >&2
       exit 2;;
  esac
done
case "$DEVICE" in cpu|cuda) ;; *) echo "gpu_check.sh: --device must be cpu or cuda, got '$DEVICE'" >&2; exit 2;; esac

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/gpu_check_out}"
mkdir -p "$OUT"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
[ -x "$ROOT/.venv/bin/python" ] && [ -z "${PYTHON:-}" ] && PY="$ROOT/.venv/bin/python"
: > "$OUT/summary.txt"

step() {  # step NAME SECONDS CMD...
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s)
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name: exit $rc, $(( $(date +%s) - t0 )) s" | tee -a "$OUT/summary.txt"
  tail -n 30 "$OUT/$name.txt"
}

if [ "$DEVICE" = cuda ]; then
  SIZES=128x128,270x480,540x960; REPEATS=5; PRESETS=T,S; L_SIZE=270x480
  BATCH=32; PATCH=30x90; STEPS=10; ITERS=60; CROP=""; THREADS=16
  PRECS=tf32,bf16,fp16; L_PRESET=L; TRAIN_PRECS=tf32,bf16; COMPILE_PREC=bf16
  COMPILE_BACKEND=inductor
else  # dry run: every step on tiny sizes (CPU float16 kernels are slow: bf16 only; T for L)
  SIZES=16x24,24x40; REPEATS=1; PRESETS=T; L_SIZE=12x20
  BATCH=2; PATCH=12x30; STEPS=1; ITERS=3; CROP="--crop 24x32 --precisions fp32,bf16"
  THREADS=2; PRECS=fp32,bf16; L_PRESET=T; TRAIN_PRECS=fp32; COMPILE_PREC=fp32
  COMPILE_BACKEND=eager  # graph capture only: inductor code generation takes minutes here
fi

step env 60 "$PY" -c "
import torch, platform
print('torch', torch.__version__, 'python', platform.python_version())
print('cuda available', torch.cuda.is_available(), 'cuda', torch.version.cuda)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(p.name, round(p.total_memory / 2**30, 1), 'GiB', 'free', round(torch.cuda.mem_get_info()[0] / 2**30, 1), 'GiB')
"

step tests 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_precision_memory.py

step infer 150 "$PY" benchmarks/inference.py --device "$DEVICE" --threads "$THREADS" \
  --presets "$PRESETS" --sizes "$SIZES" --precisions "$PRECS" --repeats "$REPEATS"

step infer_L 90 "$PY" benchmarks/inference.py --device "$DEVICE" --threads "$THREADS" \
  --presets "$L_PRESET" --sizes "$L_SIZE" --precisions tf32,bf16 --repeats 3

step infer_fp32 60 "$PY" benchmarks/inference.py --device "$DEVICE" --threads "$THREADS" \
  --presets T --sizes "${SIZES%%,*}" --precisions fp32 --repeats "$REPEATS" --plain

# shellcheck disable=SC2086
step precision 90 "$PY" benchmarks/precision.py --device "$DEVICE" --threads "$THREADS" $CROP

step train 90 "$PY" benchmarks/train_throughput.py --device "$DEVICE" --threads "$THREADS" \
  --presets T --batch "$BATCH" --patch "$PATCH" --precisions "$TRAIN_PRECS" \
  --steps "$STEPS" --warmup 2

# A short training run through the CLI on synthetic pairs.
"$PY" - "$OUT/train_data" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
root = Path(sys.argv[1]); root.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
for i in range(4):
    d = 4 + 2 * i
    base = rng.random((34, 100, 3))
    big = np.asarray(Image.fromarray((base * 255).astype(np.uint8)).resize((720 + d, 240), Image.BICUBIC))
    Image.fromarray(big[:, :720]).save(root / f"{i + 1:04d}_L.png")
    Image.fromarray(big[:, d:d + 720]).save(root / f"{i + 1:04d}_R.png")
EOF
rm -rf "$OUT/train_run"
AMP=bf16; [ "$DEVICE" = cpu ] && AMP=none
step train_cli 120 "$PY" -m stereosr train cpu_tiny --set "data.train_root=$OUT/train_data" \
  --set "train.run_dir=$OUT/train_run" --set "train.device=$DEVICE" --set "train.amp=$AMP" \
  --set "train.channels_last=true" --set "schedule.total_iters=$ITERS" \
  --set "data.batch_size=$BATCH" --set "data.lr_patch=[30, 90]" --set train.progress=false \
  --set train.checkpoint_every=1000 --set train.log_every=1

# The CLI on the Motorcycle pair (LR by MATLAB bicubic).
"$PY" - "$OUT/motorcycle" <<'EOF'
import sys
from pathlib import Path
from PIL import Image
from skimage import data
from stereosr.degrade.bicubic import imresize
root = Path(sys.argv[1]); root.mkdir(parents=True, exist_ok=True)
left, right, _ = data.stereo_motorcycle()
for name, img in (("motorcycle_left.png", left), ("motorcycle_right.png", right)):
    Image.fromarray(imresize(img[:500, :740], 0.25)).save(root / name)
EOF
rm -rf "$OUT/upscaled" "$OUT/upscaled_bf16"
step upscale 90 bash -c "'$PY' -m stereosr upscale '$OUT/motorcycle/motorcycle_left.png' \
  '$OUT/motorcycle/motorcycle_right.png' -o '$OUT/upscaled' --device $DEVICE --json && \
  '$PY' -m stereosr upscale '$OUT/motorcycle/motorcycle_left.png' \
  '$OUT/motorcycle/motorcycle_right.png' -o '$OUT/upscaled_bf16' --device $DEVICE \
  --precision bf16 --json"

[ -n "${SKIP_COMPILE:-}" ] || step compile 240 "$PY" benchmarks/train_throughput.py --device "$DEVICE" --threads "$THREADS" \
  --presets T --batch "$BATCH" --patch "$PATCH" --precisions "$COMPILE_PREC" \
  --steps "$STEPS" --warmup 3 --compile --compile-backend "$COMPILE_BACKEND" \
  --compile-mode "${COMPILE_MODE:-default}"

echo
echo "results in $OUT:"
cat "$OUT/summary.txt"
! grep -q "exit [1-9]" "$OUT/summary.txt"
