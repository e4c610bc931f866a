"""``stereosr make-patches``: cut HR stereo pairs into the official training patch folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError
from ._common import parse_size

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "make-patches", help="cut HR stereo pairs into LR/HR training patches",
        description="Crop each HR pair of HR_DIR to a multiple of --scale, make its LR views "
                    "with MATLAB bicubic, and write every LR window of --lr-size (stride "
                    "--stride LR pixels) with the matching HR window as OUT_DIR/NNNNNN/"
                    "{hr0,hr1,lr0,lr1}.png, the layout of the official NAFSSR patches.")
    p.add_argument("hr_dir", type=Path, metavar="HR_DIR", help="folder of HR stereo pairs")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="output folder (empty)")
    p.add_argument("--scale", type=int, default=4, help="SR factor (default 4)")
    p.add_argument("--lr-size", type=parse_size, default=(30, 90), metavar="HxW",
                   help="LR patch size (default 30x90; the HR patch is scale times larger)")
    p.add_argument("--stride", type=int, default=20,
                   help="step between patches in LR pixels (default 20)")
    p.add_argument("--hr-downscale", type=int, default=1, metavar="K",
                   help="shrink the HR views by K with MATLAB bicubic first (the official "
                        "recipe uses 2 for Middlebury; default 1)")
    p.add_argument("--layout", default="auto",
                   help="pair layout of HR_DIR (default auto; see docs/data.md)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable, incomplete or mismatched pairs with a warning "
                        "instead of stopping")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty OUT_DIR, replacing patch folders")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.pairs import find_pairs
    from ..data.patches import make_patches

    if args.scale < 1:
        raise InputError(f"--scale must be a positive integer, got {args.scale}")
    if args.stride < 1:
        raise InputError(f"--stride must be a positive integer, got {args.stride}")
    pairs = find_pairs(args.hr_dir, layout=args.layout,
                       on_error="skip" if args.skip_bad else "raise")
    print(f"{args.hr_dir}: {len(pairs)} pairs (layout {pairs.layout})", file=sys.stderr)
    report = make_patches(pairs, args.out_dir, args.scale, lr_size=args.lr_size,
                          stride=args.stride, hr_downscale=args.hr_downscale,
                          overwrite=args.overwrite, progress=sys.stderr.isatty(),
                          skip_bad=args.skip_bad)
    h, w = args.lr_size
    print(f"wrote {report.patches} patches (LR {h}x{w}, HR {h * args.scale}x{w * args.scale}) "
          f"from {report.pairs} pairs to {args.out_dir}")
    if report.too_small:
        print(f"{len(report.too_small)} pairs smaller than one patch were left out: "
              + ", ".join(report.too_small[:5]) + (" ..." if len(report.too_small) > 5 else ""),
              file=sys.stderr)
    skipped = [n for n, _ in pairs.skipped + report.skipped]
    if skipped:
        print(f"skipped {len(skipped)} bad pair(s): {', '.join(skipped[:5])}"
              + (" ..." if len(skipped) > 5 else ""), file=sys.stderr)
    if report.removed_stale:
        print(f"removed {report.removed_stale} patch folders of an earlier run", file=sys.stderr)
    return 0
