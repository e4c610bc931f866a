#!/usr/bin/env python3
"""Score checkpoints, and equal means of checkpoints, on the validation pairs before packaging.

Each ``--mean`` names one candidate: a checkpoint, or several of one net joined by ``+``
(averaged with equal weights, as ``package_default_model.py --average`` would package them).
Every candidate is scored on the synthetic and the real pairs of ``--val`` (files named
``real-*`` are the real ones), (L+R)/2 RGB PSNR with TLC, as in validation during training;
one JSON line per candidate goes to stdout. Motorcycle and the held-out test pairs are never
read here: candidates are chosen on validation.

    python scripts/score_checkpoint_means.py \\
        --mean training_runs/stereosr_x4_v19_small/model_best.safetensors \\
        --mean training_runs/stereosr_x4_v19_small/model_best.safetensors+training_runs/stereosr_x4_v18_triple/model_best.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from package_default_model import average_checkpoints

from stereosr.data.pairs import find_pairs
from stereosr.evaluate import evaluate_model, load_eval_pair
from stereosr.models.checkpoint import load_model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mean", action="append", required=True,
                    help="a checkpoint, or checkpoints of one net joined by '+' (repeatable)")
    ap.add_argument("--val", type=Path, default=Path("data/val_hr"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    candidates = [[Path(f) for f in c.split("+")] for c in args.mean]
    for f in {f for c in candidates for f in c}:
        if not f.is_file():
            print(f"score_checkpoint_means: error: {f}: no such checkpoint", file=sys.stderr)
            return 2
    files = find_pairs(args.val)
    real = [load_eval_pair(f, 4) for f in files if f.name.startswith("real-")]
    synthetic = [load_eval_pair(f, 4) for f in files if not f.name.startswith("real-")]
    for members in candidates:
        t0 = time.perf_counter()
        model = load_model(members[0], device="cpu")
        if len(members) > 1:
            average_checkpoints(model, members[1:])
        row: dict[str, object] = {"mean_of": [m.as_posix() for m in members]}
        for name, pairs in (("synthetic", synthetic), ("real", real)):
            if pairs:
                res = evaluate_model(model, pairs, bicubic=False).mean()
                row[f"{name}_psnr"] = res["model"]["stereo"]["psnr"]
                row[f"{name}_pairs"] = len(pairs)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
