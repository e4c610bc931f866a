"""Rectified stereo geometry shared by the losses, the metrics and the data readers.

Disparity convention (rectified pairs, disparities in pixels of the images they go with): the
left pixel (y, x) shows the same scene point as the right pixel (y, x - d_left(y, x)); the right
pixel (y, x) the same as the left pixel (y, x + d_right(y, x)).

The known-disparity rule, one for the whole package (:func:`known_disparity`): a disparity is
known when it is finite and greater than 0. Ground-truth files mark "no measurement" in two
ways: ``inf``/NaN (Middlebury PFM files, scikit-image's ``stereo_motorcycle``) and 0 (KITTI's
16-bit PNG files and the older Middlebury PNG files). With the convention above a measured
disparity is positive (0 would be a point at infinity, negative one behind the cameras), so
reading 0 and below as unknown accepts both kinds of files without losing a measurement.

:func:`row_matching_attention` is a parameter-free soft stereo matcher along rows, used where
no disparity is given (the consistency training loss).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["estimate_vertical_offset", "known_disparity", "row_matching_attention"]

_D = TypeVar("_D", np.ndarray, Tensor)


def known_disparity(disparity: _D) -> _D:
    """Boolean map of the known disparities: finite and > 0 (see the module docstring).

    ``disparity``: numpy array or torch tensor of any shape; returns the same kind and shape.
    """
    if isinstance(disparity, Tensor):
        return torch.isfinite(disparity) & (disparity > 0)
    d = np.asarray(disparity)
    with np.errstate(invalid="ignore"):
        return np.isfinite(d) & (d > 0)


def row_matching_attention(left: Tensor, right: Tensor, *, temperature: float = 0.01,
                           max_disparity: int | None = None, window: int = 3
                           ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Soft row-wise correspondences between two rectified views (no learnt parameters).

    ``left``, ``right``: (B, C, H, W). The cost of matching left pixel x with right pixel x'
    of the same row is the mean squared difference of their ``window`` x ``window``
    neighbourhoods; only disparities ``d = x - x'`` in ``[0, max_disparity]`` are allowed.
    Returns ``(attention_r2l, attention_l2r, best_cost_l, best_cost_r)``: (B, H, W, W) maps
    whose rows sum to 1 (``softmax(-cost / temperature)``) and the (B, 1, H, W) lowest cost of
    each pixel (large where a pixel has no match, e.g. occlusions).
    """
    b, c, h, w = left.shape
    pad = window // 2

    def feats(x: Tensor) -> Tensor:  # (B, H, W, C*k*k)
        cols = F.unfold(F.pad(x, (pad, pad, pad, pad), mode="replicate"), window)
        return cols.view(b, c * window * window, h, w).permute(0, 2, 3, 1)

    fl, fr = feats(left), feats(right)
    k = fl.shape[-1]
    # squared distances |a|^2 + |b|^2 - 2 a.b, per row: (B, H, W_left, W_right)
    cost = ((fl * fl).sum(-1, keepdim=True) + (fr * fr).sum(-1).unsqueeze(-2)
            - 2.0 * torch.einsum("byxk,byzk->byxz", fl, fr)).clamp_min(0) / k
    x = torch.arange(w, device=left.device)
    disp = x.view(w, 1) - x.view(1, w)  # d = x_left - x_right
    allowed = disp >= 0
    if max_disparity is not None:
        allowed = allowed & (disp <= max_disparity)
    big = torch.finfo(cost.dtype).max / 4
    masked = cost.masked_fill(~allowed, big)
    a_r2l = torch.softmax(-masked / temperature, dim=-1)
    masked_t = cost.transpose(-1, -2).masked_fill(~allowed.T, big)
    a_l2r = torch.softmax(-masked_t / temperature, dim=-1)
    best_l = masked.min(dim=-1).values.unsqueeze(1)
    best_r = masked_t.min(dim=-1).values.unsqueeze(1)
    return a_r2l, a_l2r, best_l, best_r


def estimate_vertical_offset(left: np.ndarray, right: np.ndarray, max_offset: float = 32.0
                             ) -> float:
    """Vertical offset ``dy`` (pixels, sub-pixel) of a near-parallel stereo pair: the right
    view's row ``y + dy`` shows what the left view's row ``y`` shows.

    ``left``, ``right``: (H, W) or (H, W, C) arrays of the same size. Horizontal disparities
    shift content along rows only, so the profile of row means (over all columns) of the two
    views differs by the vertical offset alone; the offset is the peak of the normalised
    cross-correlation of the two high-passed profiles, refined by a parabola through the peak
    and its neighbours. Reliable for offsets up to ``max_offset`` with a textured scene (the
    Pillow test MPOs: ~9 px for fujifilm.mpo, ~2 px for sugarshack/frozenpond).
    """
    def profile(img: np.ndarray) -> np.ndarray:
        a = np.asarray(img, dtype=np.float64)
        if a.ndim == 3:
            a = a.mean(axis=2)
        p = a.mean(axis=1)
        k = 15  # remove slow trends (exposure differences, vignetting)
        smooth = np.convolve(np.pad(p, k, mode="edge"), np.ones(2 * k + 1) / (2 * k + 1),
                             mode="same")[k:-k]
        return p - smooth

    if np.shape(left)[:2] != np.shape(right)[:2]:
        raise ValueError(f"views differ in size: {np.shape(left)[:2]} vs {np.shape(right)[:2]}")
    pl, pr = profile(left), profile(right)
    n = len(pl)
    m = int(min(max_offset, n // 4))
    lags = np.arange(-m, m + 1)
    scores = np.empty(len(lags))
    for i, s in enumerate(lags):  # right row y + s against left row y
        a = pl[max(0, -s):n - max(0, s)]
        b = pr[max(0, s):n - max(0, -s)]
        a, b = a - a.mean(), b - b.mean()
        scores[i] = float(a @ b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)
    k = int(np.argmax(scores))
    frac = 0.0
    if 0 < k < len(lags) - 1:
        y0, y1, y2 = scores[k - 1], scores[k], scores[k + 1]
        den = y0 - 2 * y1 + y2
        frac = 0.5 * (y0 - y2) / den if den < 0 else 0.0
    return float(lags[k] + frac)

