"""Map-style data set of stereo SR samples: HR pairs with their LR views.

Each item is a dict::

    {"lr_left", "lr_right": (h, w, 3) float32 in [0, 1],
     "hr_left", "hr_right": (scale*h, scale*w, 3) float32 in [0, 1],
     "name": str}

LR views come from disk where the layout has them (official patches and test sets), or are
made from the HR views, which are first cropped to a multiple of the scale (modcrop): with
MATLAB bicubic (:func:`stereosr.degrade.bicubic.imresize`, as the field does) or with any
``degrade(hr_left, hr_right, scale, rng) -> (lr_left, lr_right)`` callable (float32 (H, W, 3)
in, float32 (H/scale, W/scale, 3) out), e.g. a realistic blur/noise/JPEG degradation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch.utils.data

from ..errors import InputError
from ..imageops import as_rgb, modcrop, to_float
from ..io import read_image
from .pairs import PairFiles, find_pairs

__all__ = ["DegradeFn", "StereoSRDataset", "bicubic_lr"]

#: ``degrade(hr_left, hr_right, scale, rng) -> (lr_left, lr_right)``
DegradeFn = Callable[[np.ndarray, np.ndarray, int, np.random.Generator],
                     tuple[np.ndarray, np.ndarray]]


def bicubic_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB bicubic ``imresize(hr, 1/scale)`` of a modcropped (H, W, C) image, same dtype.

    Integer images give integer LR (rounded like MATLAB, as in LR files on disk).
    """
    from ..degrade.bicubic import imresize

    return imresize(hr, 1.0 / scale)


class StereoSRDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Stereo pairs as SR training/validation samples (see the module docstring).

    Args:
        pairs: a folder (read with :func:`find_pairs`) or a list of :class:`PairFiles`.
        scale: SR factor (2, 3, 4, ...).
        lr_source: ``"auto"`` (disk when the pairs have LR files and no ``degrade`` is given,
            else made from HR), ``"disk"`` or ``"bicubic"``.
        degrade: optional callable making LR from HR (overrides bicubic); called with a
            generator seeded from ``(seed, epoch, index)``.
        cache: keep decoded images (and deterministic LR views) in memory.
        seed: base seed of the ``degrade`` generators.
        layout, on_error: passed to :func:`find_pairs` when ``pairs`` is a folder.
    """

    def __init__(self, pairs: str | os.PathLike[str] | Sequence[PairFiles], scale: int, *,
                 lr_source: str = "auto", degrade: DegradeFn | None = None,
                 cache: bool = False, seed: int = 0, layout: str = "auto",
                 on_error: str = "raise") -> None:
        if int(scale) != scale or scale < 1:
            raise InputError(f"scale must be a positive integer, got {scale}")
        if lr_source not in ("auto", "disk", "bicubic"):
            raise InputError(f"lr_source must be auto, disk or bicubic, got {lr_source!r}")
        if isinstance(pairs, (str, os.PathLike)):
            pairs = find_pairs(pairs, layout=layout, on_error=on_error, scale=int(scale))
        self.pairs: list[PairFiles] = list(pairs)
        if not self.pairs:
            raise InputError("the data set has no stereo pairs")
        has_lr = all(p.lr_left is not None and p.lr_right is not None for p in self.pairs)
        if lr_source == "disk" and not has_lr:
            missing = next(p for p in self.pairs if p.lr_left is None or p.lr_right is None)
            raise InputError(f"pair {missing.name!r} has no LR files; use lr_source='bicubic'")
        if lr_source == "disk" and degrade is not None:
            raise InputError("lr_source='disk' reads LR files; it cannot be combined with "
                             "a degrade function")
        self.use_disk_lr = lr_source == "disk" or (lr_source == "auto" and has_lr
                                                   and degrade is None)
        self.scale = int(scale)
        self.degrade = degrade
        self.cache = cache
        self.seed = int(seed)
        self.epoch = 0
        self._store: dict[int, tuple[np.ndarray, ...]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Change the ``degrade`` random streams (call once per epoch for fresh degradations)."""
        self.epoch = int(epoch)

    def _load(self, index: int) -> tuple[np.ndarray, ...]:
        """(hr_l, hr_r[, lr_l, lr_r]) as stored integer/float arrays, HR modcropped."""
        if index in self._store:
            return self._store[index]
        p = self.pairs[index]
        hr_l = modcrop(as_rgb(read_image(p.left)), self.scale)
        hr_r = modcrop(as_rgb(read_image(p.right)), self.scale)
        if hr_l.shape != hr_r.shape:
            raise InputError(f"{p.right}: size {hr_r.shape[1]}x{hr_r.shape[0]} differs from the "
                             f"left view's {hr_l.shape[1]}x{hr_l.shape[0]}")
        arrays: tuple[np.ndarray, ...] = (hr_l, hr_r)
        if self.use_disk_lr:
            assert p.lr_left is not None and p.lr_right is not None
            lr_l, lr_r = as_rgb(read_image(p.lr_left)), as_rgb(read_image(p.lr_right))
            for path, lr in ((p.lr_left, lr_l), (p.lr_right, lr_r)):
                want = (hr_l.shape[0] // self.scale, hr_l.shape[1] // self.scale)
                if lr.shape[:2] != want:
                    raise InputError(
                        f"{path}: LR view is {lr.shape[1]}x{lr.shape[0]} but x{self.scale} of the "
                        f"HR view needs {want[1]}x{want[0]}; check the scale")
            arrays += (lr_l, lr_r)
        elif self.degrade is None:
            arrays += (bicubic_lr(hr_l, self.scale), bicubic_lr(hr_r, self.scale))
        if self.cache:
            self._store[index] = arrays
        return arrays

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        index %= len(self)
        arrays = self._load(index)
        hr_l, hr_r = to_float(arrays[0]), to_float(arrays[1])
        if len(arrays) == 4:
            lr_l = np.clip(to_float(arrays[2]), 0.0, 1.0)
            lr_r = np.clip(to_float(arrays[3]), 0.0, 1.0)
        else:
            assert self.degrade is not None
            rng = np.random.default_rng([self.seed, self.epoch, index])
            lr_l, lr_r = self.degrade(hr_l, hr_r, self.scale, rng)
            want = (hr_l.shape[0] // self.scale, hr_l.shape[1] // self.scale, 3)
            if np.shape(lr_l) != want or np.shape(lr_r) != want:
                raise ValueError(f"degrade returned LR views of shapes {np.shape(lr_l)} and "
                                 f"{np.shape(lr_r)}; expected {want}")
            lr_l = np.clip(np.asarray(lr_l, dtype=np.float32), 0.0, 1.0)
            lr_r = np.clip(np.asarray(lr_r, dtype=np.float32), 0.0, 1.0)
        return {"lr_left": np.ascontiguousarray(lr_l, dtype=np.float32),
                "lr_right": np.ascontiguousarray(lr_r, dtype=np.float32),
                "hr_left": np.ascontiguousarray(hr_l, dtype=np.float32),
                "hr_right": np.ascontiguousarray(hr_r, dtype=np.float32),
                "name": self.pairs[index].name}
