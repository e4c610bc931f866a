"""The :class:`StereoPair` type: two rectified views of one scene, checked once on creation.

Invariants: both views are (H, W, 3) float32 arrays in [0, 1] of the same size; rows of the
two views are epipolar lines (a scene point at column ``x`` in the left view appears at
``x - d`` in the right view, ``d >= 0`` its disparity).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .io import read_image, to_float

__all__ = ["StereoPair", "as_rgb", "modcrop"]


def as_rgb(arr: np.ndarray) -> np.ndarray:
    """(H, W[, C]) image with C in {1, 2, 3, 4} -> (H, W, 3), same dtype.

    Grey is repeated over three channels; an alpha channel is dropped.
    """
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"expected an (H, W, C) image with 1-4 channels, got shape {arr.shape}")
    c = arr.shape[2]
    if c in (1, 2):
        return np.repeat(arr[..., :1], 3, axis=2)
    return arr[..., :3] if c == 4 else arr


def modcrop(arr: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right of (H, W, ...) ``arr`` so H and W are multiples of ``scale``."""
    if scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale}")
    h, w = arr.shape[:2]
    hc, wc = h - h % scale, w - w % scale
    if hc == 0 or wc == 0:
        raise InputError(f"image of {h}x{w} pixels is smaller than the scale {scale}")
    return arr[:hc, :wc]


@dataclass(frozen=True)
class StereoPair:
    """A left and a right view, each (H, W, 3) float32 in [0, 1], same size."""

    left: np.ndarray
    right: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        for view, arr in (("left", self.left), ("right", self.right)):
            if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[2] != 3:
                raise InputError(f"{self._label()}{view} view must be an (H, W, 3) array, got "
                                 f"{getattr(arr, 'shape', type(arr).__name__)}")
            if arr.dtype != np.float32:
                raise InputError(f"{self._label()}{view} view must be float32, got {arr.dtype}; "
                                 "build pairs with StereoPair.from_arrays")
        if self.left.shape != self.right.shape:
            raise InputError(f"{self._label()}left view is {self.left.shape[1]}x"
                             f"{self.left.shape[0]} but right view is {self.right.shape[1]}x"
                             f"{self.right.shape[0]}; stereo views must have the same size")

    def _label(self) -> str:
        return f"{self.name}: " if self.name else ""

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of each view in pixels."""
        return int(self.left.shape[0]), int(self.left.shape[1])

    @classmethod
    def from_arrays(cls, left: np.ndarray, right: np.ndarray, name: str = "") -> StereoPair:
        """Build from uint8/uint16/float arrays with 1-4 channels (floats are clipped to [0, 1])."""
        views = []
        for arr in (left, right):
            f = to_float(as_rgb(np.asarray(arr)))
            if not np.all(np.isfinite(f)):
                raise InputError(f"{name + ': ' if name else ''}image holds NaN or infinite "
                                 "values")
            views.append(np.ascontiguousarray(np.clip(f, 0.0, 1.0), dtype=np.float32))
        return cls(views[0], views[1], name)

    @classmethod
    def read(cls, left: str | os.PathLike[str], right: str | os.PathLike[str],
             name: str = "") -> StereoPair:
        """Read both views from image files (8/16-bit, grey/RGB/RGBA)."""
        return cls.from_arrays(read_image(left), read_image(right), name)

    def modcrop(self, scale: int) -> StereoPair:
        """Both views cropped (bottom/right) to a multiple of ``scale``."""
        return StereoPair(modcrop(self.left, scale), modcrop(self.right, scale), self.name)
