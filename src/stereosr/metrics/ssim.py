"""SSIM (Wang et al. 2004) on the 0..255 scale, two window conventions.

- ``window="uniform"`` (default): 7 x 7 box window, sample covariance (N / (N - 1)), as
  scikit-image's ``structural_similarity`` computes it by default; the convention of the stereo
  SR papers.
- ``window="gaussian"``: 11 x 11 Gaussian window, sigma 1.5, population covariance; BasicSR's
  SSIM (equal to scikit-image with ``gaussian_weights=True, use_sample_covariance=False``).

Local statistics are taken only where the window fits inside the image ("valid" positions),
so no padding convention enters the result. K1 = 0.01, K2 = 0.03, data range 255. Colour
images: the mean over channels of the per-channel mean SSIM.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from ..errors import InputError
from ._image import Image, scoring_pair

__all__ = ["Window", "ssim", "ssim_from_arrays", "window_1d"]

Window = Literal["uniform", "gaussian"]

K1, K2 = 0.01, 0.03


def window_1d(window: Window) -> np.ndarray:
    """The separable 1-D window, normalised to sum 1: 7 taps (uniform) or 11 (Gaussian 1.5)."""
    if window == "uniform":
        return np.full(7, 1.0 / 7.0)
    if window == "gaussian":
        k = np.arange(-5, 6, dtype=np.float64)
        g = np.exp(-(k * k) / (2.0 * 1.5 * 1.5))
        return g / g.sum()
    raise InputError(f"unknown SSIM window {window!r}; use 'uniform' or 'gaussian'")


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of (N, H, W) maps with the 1-D window ``w``.

    A weighted sum of shifted views (k multiply-adds per axis), exact in float64.
    """
    k = w.size
    h, wd = x.shape[-2], x.shape[-1]
    rows = x[..., :, 0:wd - k + 1] * w[0]
    for i in range(1, k):
        rows += w[i] * x[..., :, i:wd - k + 1 + i]
    out = rows[..., 0:h - k + 1, :] * w[0]
    for i in range(1, k):
        out += w[i] * rows[..., i:h - k + 1 + i, :]
    return out


def ssim_from_arrays(sr: np.ndarray, hr: np.ndarray, window: Window = "uniform",
                     data_range: float = 255.0, strip: int = 16) -> float:
    """Mean SSIM of two same-shape (C, H, W) float64 arrays on a 0..``data_range`` scale.

    The SSIM map is computed in bands of ``strip`` output rows so that the working set stays
    in the CPU cache (the result does not depend on ``strip``).
    """
    w = window_1d(window)
    k = w.size
    c, h, wd = sr.shape
    if h < k or wd < k:
        raise InputError(f"image of {wd}x{h} is smaller than the {k}x{k} SSIM window")
    n = k * k
    cov_norm = n / (n - 1) if window == "uniform" else 1.0
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    total = np.zeros(c)
    for top in range(0, h - k + 1, strip):
        bottom = min(top + strip, h - k + 1)
        x, y = sr[:, top:bottom + k - 1], hr[:, top:bottom + k - 1]
        stats = _filter_valid(np.concatenate([x, y, x * x, y * y, x * y]), w)
        ux, uy, uxx, uyy, uxy = np.split(stats, 5)
        vx = cov_norm * (uxx - ux * ux)
        vy = cov_norm * (uyy - uy * uy)
        vxy = cov_norm * (uxy - ux * uy)
        smap = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        total += smap.sum(axis=(1, 2))
    value = float((total / ((h - k + 1) * (wd - k + 1))).mean())
    if math.isnan(value):
        raise InputError("SSIM is undefined for these images (NaN); check the inputs")
    return value


def ssim(sr: Image, hr: Image, *, crop_border: int = 0, test_y_channel: bool = False,
         window: Window = "uniform", quantize: bool = True) -> float:
    """SSIM between one SR image and its HR reference (1 = identical).

    ``sr``, ``hr``: (H, W[, C]) numpy arrays or (C, H, W) tensors, uint8/uint16 or float in
    [0, 1] (floats are quantised to 8 bits unless ``quantize=False``). ``crop_border`` pixels
    are dropped on every side; ``test_y_channel`` scores the MATLAB luma Y instead of RGB;
    ``window`` picks the convention (see the module docstring).
    """
    x, y = scoring_pair(sr, hr, crop_border, test_y_channel, quantize)
    return ssim_from_arrays(x, y, window)
