"""``stereosr degrade``: make the LR pairs of a folder of HR stereo pairs.

LR files mirror HR_DIR: same relative folders and file names (a Flickr1024 folder of
``0001_L.png`` / ``0001_R.png`` gives the same names in LR_DIR). Every check (pairs, config,
existing outputs, writable folder) runs before the first file is written.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, StereoSRWarning
from ..files import (
    input_places,
    landing_place,
    mirrored_path,
    probe_folder,
    remove_stale_temps,
)
from ._common import check_free, commit_files

__all__ = ["add_parser", "pair_rng", "run"]

CONFIG_NAME = "degradation.yaml"
_JPEG_SUFFIXES = {".jpg", ".jpeg"}
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF",
            ".tiff": "TIFF", ".webp": "WEBP"}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "degrade", help="make LR stereo pairs from a folder of HR pairs",
        description="Downscale every stereo pair of HR_DIR by --scale (MATLAB bicubic, or a "
                    "random realistic degradation with --realistic) and write the LR views "
                    "into LR_DIR under the same relative paths and file names.")
    p.add_argument("hr_dir", type=Path, metavar="HR_DIR", help="folder of HR stereo pairs")
    p.add_argument("lr_dir", type=Path, metavar="LR_DIR",
                   help="output folder (created if missing; must differ from HR_DIR)")
    p.add_argument("--scale", type=int, default=4, help="integer downscaling factor (default 4)")
    p.add_argument("--realistic", type=Path, default=None, metavar="CONFIG.yaml",
                   help="degradation config (blur, noise, JPEG); without it: MATLAB bicubic")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed of --realistic (default 0; each pair's draw depends only "
                        "on the seed and the pair's name)")
    p.add_argument("--layout", default="auto",
                   help="pair layout of HR_DIR (default auto; see docs/data.md)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable or incomplete pairs instead of stopping")
    p.add_argument("--overwrite", action="store_true", help="replace existing LR files")
    p.set_defaults(func=run)


def pair_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of one pair: a function of the seed and the pair's name only."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return np.random.default_rng([seed & (2 ** 64 - 1), int.from_bytes(digest[:8], "little")])


def _check_output_dir(folder: Path, hr_dir: Path) -> None:
    """LR_DIR must not be HR_DIR, must be (or be creatable as) a writable folder."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder; choose another LR_DIR")
    if os.path.abspath(folder) == os.path.abspath(hr_dir) or (
            folder.exists() and hr_dir.exists() and os.path.samefile(folder, hr_dir)):
        raise InputError(f"{folder}: LR_DIR is HR_DIR; choose another output folder")
    here, src = os.path.abspath(folder), os.path.abspath(hr_dir)
    if os.path.commonpath([here, src]) == src:
        raise InputError(f"{folder}: LR_DIR lies inside HR_DIR, where its images would be read "
                         "as HR pairs; choose a folder outside HR_DIR")
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{folder}: cannot create the folder ({probe} is a file); choose "
                         "another LR_DIR")
    probe_folder(probe)


def _check_size(path: Path, scale: int) -> None:
    from ..io import image_size

    h, w = image_size(path)
    if min(w, h) < scale:
        raise InputError(f"{path}: image of {w}x{h} pixels is smaller than the scale factor "
                         f"{scale}")


def _encode(arr: np.ndarray, path: Path) -> bytes:
    """Encode like the HR file's format; JPEG at quality 95 without chroma subsampling and
    WebP lossless, so the file format adds as little loss as it can."""
    import io as _io

    from PIL import Image

    from ..io import encode_image

    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown image extension {path.suffix!r}")
    if fmt not in ("JPEG", "WEBP") or arr.dtype != np.uint8:
        return encode_image(arr, fmt)
    a = arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
    buf = _io.BytesIO()
    img = Image.fromarray(a)
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=95, subsampling=0)
    else:
        img.save(buf, format="WEBP", lossless=True)
    return buf.getvalue()


def _config_text(args: argparse.Namespace, config: Any) -> bytes:
    import yaml

    doc: dict[str, Any] = {"scale": args.scale, "hr_dir": str(args.hr_dir)}
    if config is None:
        doc["degradation"] = "bicubic"
    else:
        doc["seed"] = args.seed
        doc["degradation"] = config.to_dict()
    return yaml.safe_dump(doc, sort_keys=False).encode("utf-8")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.pairs import find_pairs
    from ..degrade.realistic import DegradationConfig, degrade_pair
    from ..io import read_image

    if args.scale < 1:
        raise InputError(f"--scale must be a positive integer, got {args.scale}")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    config = None if args.realistic is None else DegradationConfig.from_yaml(args.realistic)
    hr_dir: Path = args.hr_dir
    lr_dir: Path = args.lr_dir
    if not hr_dir.exists():
        raise InputError(f"{hr_dir}: HR folder not found")
    if not hr_dir.is_dir():
        raise InputError(f"{hr_dir}: is not a folder; give the folder of HR pairs")
    pairs = find_pairs(hr_dir, layout=args.layout, on_error="skip" if args.skip_bad else "raise")
    _check_output_dir(lr_dir, hr_dir)

    jobs: list[tuple[Any, Path, Path]] = []
    inputs = input_places(p for pf in pairs for p in (pf.left, pf.right))
    for pf in pairs:
        out_l = mirrored_path(pf.left, hr_dir, lr_dir)
        out_r = mirrored_path(pf.right, hr_dir, lr_dir)
        for out in (out_l, out_r):
            if landing_place(out) in inputs:
                raise InputError(f"{out}: would overwrite an HR input; choose another LR_DIR")
        jobs.append((pf, out_l, out_r))
    for pf, _, _ in jobs:  # image headers only: a too-small pair fails before any write
        _check_size(pf.left, args.scale)
    config_path = lr_dir / CONFIG_NAME
    check_free([p for _, a, b in jobs for p in (a, b)] + [config_path], args.overwrite)
    folders = {lr_dir} | {out.parent for _, a, b in jobs for out in (a, b)}
    for folder in sorted(folders):  # temporary files of a run killed while writing
        gone = remove_stale_temps(folder)
        if gone:
            print(f"removed {len(gone)} temporary file(s) of an interrupted run from {folder}",
                  file=sys.stderr)

    it = tqdm(jobs, desc="degrade", unit="pair", disable=None, file=sys.stderr)
    skipped = [name for name, _ in pairs.skipped]
    done = 0
    for pf, out_l, out_r in it:
        it.set_postfix_str(pf.name)
        try:
            hr_l, hr_r = read_image(pf.left), read_image(pf.right)
            lr_l, lr_r = degrade_pair(hr_l, hr_r, args.scale, config,
                                      pair_rng(args.seed, pf.name))
        except InputError as exc:
            if not args.skip_bad:
                again = (f" (and --overwrite for the {done} pair(s) written before it)"
                         if done and not args.overwrite else "")
                raise InputError(f"pair {pf.name}: {exc}; pass --skip-bad to leave out bad "
                                 f"pairs{again}") from None
            warnings.warn(f"skipping pair {pf.name!r}: {exc}", StereoSRWarning, stacklevel=1)
            skipped.append(pf.name)
            continue
        commit_files([(out_l, _encode(lr_l, out_l)), (out_r, _encode(lr_r, out_r))],
                     args.overwrite, checked=True)
        done += 1
    if not done:
        raise InputError(f"no pair could be degraded: all {len(skipped)} were skipped")
    commit_files([(config_path, _config_text(args, config))], args.overwrite, checked=True)
    kind = "bicubic" if config is None else f"realistic, seed {args.seed}"
    line = f"wrote {done} LR pairs (x1/{args.scale}, {kind}) to {lr_dir}"
    if skipped:
        line += f"; skipped {len(skipped)} bad pair(s): {', '.join(skipped[:5])}"
        line += " ..." if len(skipped) > 5 else ""
    print(line)
    return 0
