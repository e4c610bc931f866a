"""Cut HR stereo pairs into the official training patch folders.

The official NAFSSR recipe: crop each HR view to a multiple of the scale (modcrop), make the
LR view with MATLAB bicubic ``imresize(hr, 1/scale)``, then take every LR window of 30 x 90
pixels with a stride of 20 LR pixels (rows ``0, 20, 40, ...`` while the window fits, the same
for columns) and the HR window at ``scale`` times the position and size. Each patch goes to a
folder ``NNNNNN/{hr0,hr1,lr0,lr1}.png`` (0 = left, 1 = right), numbered from ``000001`` over all
pairs in order. At x4 the 800 Flickr1024 training pairs plus 60 Middlebury pairs (downscaled x2
first) give 49,020 patches.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import remove_stale_temps, staged_folder
from ..imageops import as_rgb, modcrop
from ..io import check_writable_dir, read_image, write_image
from .datasets import bicubic_lr
from .pairs import BadPairWarning, PairFiles

__all__ = ["PatchReport", "count_patches", "make_patches", "patch_positions"]

_PATCH_DIR = re.compile(r"\d{6,}")
_PATCH_FILES = frozenset({"hr0.png", "hr1.png", "lr0.png", "lr1.png"})


def patch_positions(lr_hw: tuple[int, int], lr_size: tuple[int, int] = (30, 90),
                    stride: int = 20) -> list[tuple[int, int]]:
    """Top-left (y, x) LR positions of all windows, row by row; empty if the image is smaller."""
    h, w = lr_hw
    ph, pw = lr_size
    if ph < 1 or pw < 1 or stride < 1:
        raise InputError(f"patch size {ph}x{pw} and stride {stride} must be positive")
    return [(y, x) for y in range(0, h - ph + 1, stride) for x in range(0, w - pw + 1, stride)]


def count_patches(lr_hw: tuple[int, int], lr_size: tuple[int, int] = (30, 90),
                  stride: int = 20) -> int:
    """Number of windows :func:`patch_positions` gives, computed arithmetically."""
    h, w = lr_hw
    ph, pw = lr_size
    ny = (h - ph) // stride + 1 if h >= ph else 0
    nx = (w - pw) // stride + 1 if w >= pw else 0
    return ny * nx


@dataclass
class PatchReport:
    """What :func:`make_patches` wrote."""

    patches: int = 0
    pairs: int = 0
    too_small: list[str] = field(default_factory=list)
    removed_stale: int = 0
    #: pairs left out with ``skip_bad``: ``(name, reason)``
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _existing_entries(out: Path) -> list[str]:
    return sorted(e for e in os.listdir(out) if not e.startswith("."))


def _write_patch(out: Path, number: int, width: int, images: dict[str, np.ndarray],
                 overwrite: bool) -> None:
    """Write one patch folder atomically: build it hidden, then rename it into place."""
    with staged_folder(out / f"{number:0{width}d}", overwrite) as tmp:
        for name, arr in images.items():
            write_image(tmp / f"{name}.png", arr)


def make_patches(pairs: Sequence[PairFiles], out_dir: str | os.PathLike[str], scale: int,
                 lr_size: tuple[int, int] = (30, 90), stride: int = 20,
                 hr_downscale: int = 1, overwrite: bool = False,
                 progress: bool = False, skip_bad: bool = False) -> PatchReport:
    """Cut every pair into LR/HR patch folders under ``out_dir`` (see the module docstring).

    Args:
        pairs: HR stereo pairs (their ``left``/``right`` files; LR files are ignored).
        out_dir: output folder; must be empty unless ``overwrite``.
        scale: SR factor; HR patches are ``scale * lr_size``.
        lr_size: (height, width) of the LR patches in pixels.
        stride: step between windows in LR pixels.
        hr_downscale: first shrink each HR view by this integer factor with MATLAB bicubic
            (the official recipe uses 2 for Middlebury).
        overwrite: replace existing patch folders and remove numbered patch folders left from
            an earlier, larger run.
        progress: show a progress bar on stderr.
        skip_bad: leave out a pair whose views cannot be read or differ in size, with a
            :class:`~stereosr.data.pairs.BadPairWarning`, and list it in ``report.skipped``
            (otherwise it raises :class:`InputError`).

    Images are written as 8-bit PNG (16-bit inputs stay 16-bit). Each patch folder appears
    complete or not at all.
    """
    if int(scale) != scale or scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale}")
    if hr_downscale < 1:
        raise InputError(f"hr_downscale must be a positive integer, got {hr_downscale}")
    patch_positions((1, 1), lr_size, stride)  # validates sizes
    out = check_writable_dir(out_dir)
    for p in pairs:
        for src in (p.left.parent, p.left.parent.parent):
            if out.resolve() == src.resolve():
                raise InputError(f"{out}: output folder holds the input pairs; choose another")
    existing = _existing_entries(out)
    if existing and not overwrite:
        raise InputError(f"{out}: output folder is not empty ({len(existing)} entries); "
                         "pass overwrite=True to replace the patches there")
    remove_stale_temps(out)  # partial patch folders of a killed run
    iterator: Sequence[PairFiles] = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc="pairs", unit="pair")  # type: ignore[assignment]
    report = PatchReport()
    number = 0
    width = 6
    for p in iterator:
        views = []
        try:
            for path in (p.left, p.right):
                hr = as_rgb(read_image(path))
                if hr_downscale > 1:
                    hr = bicubic_lr(hr, hr_downscale)
                views.append(modcrop(hr, scale))
            if views[0].shape != views[1].shape:
                raise InputError(f"{p.right}: size differs from {p.left}; views of a pair must "
                                 "have the same size")
        except InputError as exc:
            if not skip_bad:
                raise
            warnings.warn(f"skipping pair {p.name!r}: {exc}", BadPairWarning, stacklevel=2)
            report.skipped.append((p.name, str(exc)))
            continue
        lrs = [bicubic_lr(v, scale) for v in views]
        positions = patch_positions(lrs[0].shape[:2], lr_size, stride)
        if not positions:
            report.too_small.append(p.name)
            continue
        report.pairs += 1
        ph, pw = lr_size
        s = scale
        for y, x in positions:
            number += 1
            images = {
                "hr0": views[0][y * s:(y + ph) * s, x * s:(x + pw) * s],
                "hr1": views[1][y * s:(y + ph) * s, x * s:(x + pw) * s],
                "lr0": lrs[0][y:y + ph, x:x + pw],
                "lr1": lrs[1][y:y + ph, x:x + pw],
            }
            _write_patch(out, number, width, images, overwrite)
    report.patches = number
    if overwrite:
        for entry in _existing_entries(out):
            d = out / entry
            if (_PATCH_DIR.fullmatch(entry) and int(entry) > number and d.is_dir()
                    and set(os.listdir(d)) <= _PATCH_FILES):
                shutil.rmtree(d)
                report.removed_stale += 1
    if number == 0:
        raise InputError(f"no patches made: every pair is smaller than the LR patch "
                         f"{lr_size[0]}x{lr_size[1]} at x{scale}")
    return report
