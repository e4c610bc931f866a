"""Turning user images into the tensors the metrics score.

Every metric scores images on the 0..255 scale of 8-bit images, as the stereo SR field does:

- numpy arrays are (H, W) or (H, W, C) with C in {1, 3}; torch tensors are (H, W) or (C, H, W).
- uint8 is used as is; uint16 is reduced to 8 bits (``round(x / 257)``); float images are
  taken as [0, 1] and quantised like saved results: ``clip(round(255 x), 0, 255)``. With
  ``quantize=False`` floats are only scaled by 255 (no rounding, no clipping).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError

__all__ = ["Image", "check_same_shape", "crop_image", "rgb_to_y", "to_scoring_array"]

Image = np.ndarray | torch.Tensor


def _as_chw_array(img: Image, name: str) -> np.ndarray:
    if isinstance(img, torch.Tensor):
        t = img.detach()
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3:
            raise InputError(f"{name}: expected an (H, W) or (C, H, W) tensor, got shape "
                             f"{tuple(t.shape)}")
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        a = t.cpu().numpy()
    elif isinstance(img, np.ndarray):
        a = img[..., None] if img.ndim == 2 else img
        if a.ndim != 3:
            raise InputError(f"{name}: expected an (H, W) or (H, W, C) array, got shape "
                             f"{tuple(img.shape)}")
        a = a.transpose(2, 0, 1)
    else:
        raise InputError(f"{name}: expected a numpy array or torch tensor, got "
                         f"{type(img).__name__}")
    c, h, w = a.shape
    if c not in (1, 3):
        raise InputError(f"{name}: expected 1 (grey) or 3 (RGB) channels, got {c}; drop the "
                         "alpha channel or convert the image to RGB")
    if h == 0 or w == 0:
        raise InputError(f"{name}: image has zero size {w}x{h}")
    return a


def to_scoring_array(img: Image, name: str = "image", quantize: bool = True) -> np.ndarray:
    """Image -> (C, H, W) float64 array on the 0..255 scale (see the module docstring).

    The metrics compute in numpy float64: exact enough to match scikit-image to 1e-6, and
    fast on a busy CPU (no thread pool for these small, memory-bound operations).
    """
    a = _as_chw_array(img, name)
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a, dtype=np.float64)
    if a.dtype == np.uint16:
        return np.round(a.astype(np.float64) / 257.0)
    if np.issubdtype(a.dtype, np.floating):
        x = np.ascontiguousarray(a, dtype=np.float64)
        if not np.isfinite(x).all():
            raise InputError(f"{name}: image contains NaN or infinite values")
        x = x * 255.0
        return np.clip(np.round(x), 0.0, 255.0) if quantize else x
    raise InputError(f"{name}: unsupported dtype {a.dtype}; use uint8, uint16 or float in "
                     "[0, 1]")


def check_same_shape(a: np.ndarray, b: np.ndarray, what: str = "SR and HR") -> None:
    """Raise InputError unless the (C, H, W) arrays ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        ca, ha, wa = a.shape
        cb, hb, wb = b.shape
        if (ha, wa) != (hb, wb):
            raise InputError(f"{what} differ in size ({wa}x{ha} vs {wb}x{hb}); score images of "
                             "the same size (crop HR to a multiple of the scale first)")
        raise InputError(f"{what} differ in channels ({ca} vs {cb}); convert both to RGB")


def rgb_to_y(x: np.ndarray) -> np.ndarray:
    """(C, H, W) 0..255 -> (1, H, W) luma of MATLAB's rgb2ycbcr, 16..235 (not rounded).

    Y = 16 + 65.481 R + 128.553 G + 24.966 B with R, G, B in [0, 1]; grey images use R=G=B.
    """
    if x.shape[0] == 1:
        x = np.repeat(x, 3, axis=0)
    r, g, b = x[0] / 255.0, x[1] / 255.0, x[2] / 255.0
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b)[None]


def crop_image(x: np.ndarray, border: int = 0, left: int = 0) -> np.ndarray:
    """Drop ``border`` pixels on every side, then ``left`` more columns on the left."""
    _, h, w = x.shape
    if border < 0 or left < 0:
        raise InputError(f"crop sizes must be >= 0, got border={border}, left={left}")
    if 2 * border >= h or 2 * border + left >= w:
        raise InputError(f"image of {w}x{h} is too small for a crop of {border} px per side "
                         f"and {left} px on the left")
    if border:
        x = x[:, border:h - border, border:w - border]
    if left:
        x = x[:, :, left:]
    return x


def scoring_pair(sr: Image, hr: Image, crop_border: int = 0, test_y_channel: bool = False,
                 quantize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """SR and HR as the scores see them: converted by :func:`to_scoring_array`, checked to be
    the same shape, ``crop_border`` pixels dropped on every side, and the MATLAB luma Y taken
    when ``test_y_channel``. Raises :class:`~stereosr.errors.InputError` on a shape mismatch."""
    x = to_scoring_array(sr, "SR image", quantize)
    y = to_scoring_array(hr, "HR image", quantize)
    check_same_shape(x, y)
    x, y = crop_image(x, crop_border), crop_image(y, crop_border)
    if test_y_channel:
        x, y = rgb_to_y(x), rgb_to_y(y)
    return x, y
