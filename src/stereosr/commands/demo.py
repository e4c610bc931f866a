"""``stereosr demo``: the packaged model on the Middlebury Motorcycle pair, scored."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..files import check_writable_dir, removed_if_left_empty
from ._common import add_device_arg, commit_files

__all__ = ["add_parser", "run"]

FILES = ("lr_left.png", "lr_right.png", "bicubic_left.png", "bicubic_right.png",
         "sr_left.png", "sr_right.png", "comparison.png", "scores.json")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="upscale the Motorcycle stereo pair x4 and compare with bicubic",
        description="Make the x4 LR Motorcycle pair with MATLAB bicubic, upscale it with the "
                    "packaged model (or --weights), write the SR and bicubic pairs and a "
                    "comparison figure, and print PSNR/SSIM ((L+R)/2 and Left protocols).")
    p.add_argument("-o", "--output", type=Path, default=Path("stereosr_demo"), metavar="DIR",
                   help="output folder (default: ./stereosr_demo)")
    p.add_argument("--weights", default=None, metavar="PATH|NAME",
                   help="x4 checkpoint or registered name (default: the packaged model)")
    add_device_arg(p)
    p.add_argument("--self-ensemble", action="store_true",
                   help="average over the 4 epipolar-preserving flips")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with removed_if_left_empty(args.output):  # a failed run leaves no empty output folder
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..demo import demo_figure, run_demo
    from ..figures import png_bytes
    from ..io import encode_image
    from ..models.checkpoint import load_model
    from ..models.registry import DEFAULT_MODEL
    from ._common import check_free

    out: Path = args.output
    targets = [out / f for f in FILES]
    check_writable_dir(out)
    check_free(targets, args.overwrite)
    model = load_model(args.weights or DEFAULT_MODEL, device=args.device)
    t0 = time.perf_counter()
    res = run_demo(model, self_ensemble=args.self_ensemble)
    seconds = time.perf_counter() - t0
    scores = res.scores()
    gains = {p: scores["model"][p]["psnr"] - scores["bicubic"][p]["psnr"]
             for p in scores["model"]}
    summary: dict[str, Any] = {
        "pair": "Middlebury 2014 Motorcycle (scikit-image), x4, MATLAB-bicubic LR",
        "weights": str(args.weights or DEFAULT_MODEL),
        "self_ensemble": bool(args.self_ensemble),
        "seconds": round(seconds, 2),
        "scores": scores,
        "gain_db": gains,
    }
    files = [
        (out / "lr_left.png", encode_image(res.lr[0])),
        (out / "lr_right.png", encode_image(res.lr[1])),
        (out / "bicubic_left.png", encode_image(res.bicubic[0])),
        (out / "bicubic_right.png", encode_image(res.bicubic[1])),
        (out / "sr_left.png", encode_image(res.sr[0])),
        (out / "sr_right.png", encode_image(res.sr[1])),
        (out / "comparison.png", png_bytes(demo_figure(res))),
        (out / "scores.json", (json.dumps(summary, indent=2) + "\n").encode()),
    ]
    commit_files(files, args.overwrite)
    if args.json:
        print(json.dumps(summary))
    else:
        print(res.evaluation.format_table())
        g = gains["stereo"]
        print(f"\nstereosr vs bicubic ((L+R)/2): {g:+.2f} dB; upscaling took {seconds:.1f} s")
        print(f"wrote {len(files)} files to {out} (see {out / 'comparison.png'})")
    sys.stdout.flush()
    return 0
