"""``stereosr synth``: render synthetic HR stereo pairs from photographs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError
from ._common import parse_size

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    from ..data.synthetic import FIELD_KINDS

    p = sub.add_parser(
        "synth", help="render synthetic stereo pairs from photographs",
        description="Render --pairs stereo pairs with known disparity from the photos (files "
                    "or folders), each photo shrunk first by at least --min-downscale, and "
                    "write them to OUT_DIR in the Flickr1024 layout (0001_L.png, 0001_R.png; "
                    "disparity/0001.png as 16-bit value/256 pixels; synth.json). Files whose "
                    "path mentions 'motorcycle' (the test pair) are refused.")
    p.add_argument("photos", type=Path, nargs="+", metavar="PHOTO",
                   help="photo files or folders (searched recursively)")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="output folder (empty)")
    p.add_argument("--pairs", type=int, required=True, help="number of pairs to render")
    p.add_argument("--size", type=parse_size, default=(360, 720), metavar="HxW",
                   help="largest pair size (default 360x720; sides vary down to "
                        "(1 - --size-jitter) of it)")
    p.add_argument("--size-jitter", type=float, default=0.25,
                   help="relative range of pair sizes (default 0.25)")
    p.add_argument("--min-size", type=parse_size, default=(120, 360), metavar="HxW",
                   help="smallest pair a small photo may give (default 120x360)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--max-disparity", type=float, default=60.0,
                   help="largest disparity in output pixels (default 60)")
    p.add_argument("--kind", default="mixed", choices=["mixed", *FIELD_KINDS],
                   help="disparity field (default mixed: all kinds)")
    p.add_argument("--min-downscale", type=float, default=2.0,
                   help="smallest shrink factor for JPEG/WebP photos (default 2)")
    p.add_argument("--min-downscale-lossless", type=float, default=1.0,
                   help="smallest shrink factor for PNG/TIFF/BMP photos (default 1)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--no-disparity", action="store_true", help="do not write disparity maps")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty OUT_DIR, replacing its pairs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.training_set import SynthSettings, build_synthetic_set

    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    settings = SynthSettings(size=args.size, size_jitter=args.size_jitter, min_size=args.min_size,
                             max_disparity=args.max_disparity, kind=args.kind,
                             min_downscale=args.min_downscale,
                             min_downscale_lossless=args.min_downscale_lossless)
    report = build_synthetic_set(args.photos, args.out_dir, args.pairs, seed=args.seed,
                                 settings=settings, workers=args.workers,
                                 write_disparity=not args.no_disparity,
                                 overwrite=args.overwrite, progress=sys.stderr.isatty())
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.kinds.items()))
    print(f"wrote {report.pairs} pairs from {len(report.photos_used)} photos to {args.out_dir} "
          f"in {report.seconds:.0f} s ({kinds})")
    if report.photos_skipped:
        print(f"{len(report.photos_skipped)} photos too small were skipped: "
              + ", ".join(report.photos_skipped[:5])
              + (" ..." if len(report.photos_skipped) > 5 else ""), file=sys.stderr)
    return 0
