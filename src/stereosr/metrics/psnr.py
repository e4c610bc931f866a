"""PSNR on the 0..255 scale of 8-bit images, with BasicSR's crop and Y-channel options."""

from __future__ import annotations

import math

import numpy as np

from ._image import Image, scoring_pair

__all__ = ["psnr", "psnr_from_arrays"]


def psnr_from_arrays(sr: np.ndarray, hr: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB of two same-shape float64 arrays on a 0..``data_range`` scale.

    ``10 log10(data_range^2 / MSE)``, MSE averaged over every channel and pixel; identical
    images give ``inf``.
    """
    mse = float(np.mean((sr - hr) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse)


def psnr(sr: Image, hr: Image, *, crop_border: int = 0, test_y_channel: bool = False,
         quantize: bool = True) -> float:
    """PSNR in dB between one SR image and its HR reference.

    ``sr``, ``hr``: (H, W[, C]) numpy arrays or (C, H, W) tensors, uint8/uint16 or float in
    [0, 1] (floats are quantised to 8 bits unless ``quantize=False``; see
    :mod:`stereosr.metrics._image`). ``crop_border`` pixels are dropped on every side;
    ``test_y_channel`` scores the MATLAB luma Y (16..235) instead of RGB. Peak value 255.
    """
    x, y = scoring_pair(sr, hr, crop_border, test_y_channel, quantize)
    return psnr_from_arrays(x, y)
