"""Stereo consistency of an SR pair, measured with a known disparity map.

Rectified pair, left-view disparity ``d``: the left pixel (y, x) shows the same scene point
as the right pixel (y, x - d). The right view is warped to the left view with ``d`` (linear
interpolation along the row); where the pair is consistent the warped right view equals the
left view. The error is counted only on pixels that

- have a known disparity (finite and > 0; ``inf``, NaN and <= 0 mean unknown: the package's
  one rule, :func:`stereosr.stereo.known_disparity`, which reads Middlebury/scikit-image maps
  (unknown = ``inf``) and KITTI maps (unknown = 0) alike),
- land inside the right view (0 <= x - d <= W - 1), and
- are not occluded in the right view: a pixel is occluded when a known pixel further right on
  the same row (hence closer to the cameras) lands less than ``occlusion_tol`` pixels to the
  right of its own right-view position, i.e. covers it (the ordering rule; a z-buffer along the
  row). With the default 0.5 a surface slanted by more than half a pixel of disparity per pixel
  also counts as self-occluded; ``occlusion_tol=None`` turns the test off.

An SR pair is judged against its HR pair: the HR error is what warping and the scene (lighting,
non-Lambertian surfaces, rectification) leave over, so ``sr - hr`` is the inconsistency the
super-resolution added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..stereo import known_disparity
from ._image import Image, to_scoring_array

__all__ = [
    "ConsistencyResult",
    "disparity_mae",
    "ntire_perceptual_score",
    "stereo_consistency",
    "valid_disparity_mask",
    "warp_error",
    "warp_right_to_left",
]


def _check_disparity(disparity: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    d = np.asarray(disparity)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[..., 0]
    if d.ndim != 2:
        raise InputError(f"disparity must be an (H, W) map, got shape {tuple(d.shape)}")
    if d.shape != shape:
        raise InputError(f"disparity is {d.shape[1]}x{d.shape[0]} but the views are "
                         f"{shape[1]}x{shape[0]}; use a disparity map at the views' scale")
    if not np.issubdtype(d.dtype, np.number):
        raise InputError(f"disparity must be numeric, got dtype {d.dtype}")
    return d.astype(np.float64)


def valid_disparity_mask(disparity: np.ndarray,
                         occlusion_tol: float | None = 0.5) -> np.ndarray:
    """(H, W) bool: known, in-bounds and non-occluded left pixels (see the module docstring).

    ``disparity``: (H, W) left-view disparity in pixels.
    """
    d = np.asarray(disparity, dtype=np.float64)
    if d.ndim != 2:
        raise InputError(f"disparity must be an (H, W) map, got shape {tuple(d.shape)}")
    h, w = d.shape
    known = known_disparity(d)
    xr = np.arange(w, dtype=np.float64)[None, :] - np.where(known, d, 0.0)
    inside = known & (xr >= 0.0) & (xr <= w - 1)
    if occlusion_tol is None:
        return inside
    # smallest right-view position reached by any known pixel strictly to the right
    landing = np.where(known, xr, np.inf)
    suffix_min = np.minimum.accumulate(landing[:, ::-1], axis=1)[:, ::-1]
    right_of = np.concatenate([suffix_min[:, 1:], np.full((h, 1), np.inf)], axis=1)
    visible = right_of >= xr + occlusion_tol
    return inside & visible


def warp_right_to_left(right: np.ndarray, disparity: np.ndarray) -> np.ndarray:
    """Sample ``right`` at (y, x - d(y, x)) with linear interpolation along rows.

    ``right``: (H, W, C) float; ``disparity``: (H, W) left-view disparity. Unknown or
    out-of-bounds positions are filled with 0 (mask them with :func:`valid_disparity_mask`).
    Returns (H, W, C) float64.
    """
    r = np.asarray(right, dtype=np.float64)
    if r.ndim == 2:
        r = r[..., None]
    h, w = r.shape[:2]
    d = _check_disparity(disparity, (h, w))
    known = known_disparity(d)
    xr = np.arange(w, dtype=np.float64)[None, :] - np.where(known, d, 0.0)
    inside = known & (xr >= 0.0) & (xr <= w - 1)
    xr = np.clip(np.where(inside, xr, 0.0), 0.0, w - 1)
    x0 = np.floor(xr).astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    t = (xr - x0)[..., None]
    rows = np.arange(h)[:, None]
    out = (1.0 - t) * r[rows, x0] + t * r[rows, x1]
    out[~inside] = 0.0
    return out


def warp_error(left: Image, right: Image, disparity: np.ndarray,
               occlusion_tol: float | None = 0.5) -> tuple[float, np.ndarray]:
    """Mean absolute difference (grey levels, 0..255) between ``left`` and the warped ``right``.

    ``left``, ``right``: (H, W[, C]) arrays or (C, H, W) tensors, uint8 or float in [0, 1]
    (quantised to 8 bits). Averaged over channels and the pixels of
    :func:`valid_disparity_mask`. Returns (error, mask).
    """
    lt = to_scoring_array(left, "left view").transpose(1, 2, 0)
    rt = to_scoring_array(right, "right view").transpose(1, 2, 0)
    if lt.shape != rt.shape:
        raise InputError(f"left and right views differ in shape ({lt.shape[1]}x{lt.shape[0]} "
                         f"vs {rt.shape[1]}x{rt.shape[0]})")
    d = _check_disparity(disparity, lt.shape[:2])
    mask = valid_disparity_mask(d, occlusion_tol)
    if not mask.any():
        raise InputError("the disparity map has no valid, visible pixel; check its "
                         "convention (left view, x_right = x_left - d, unknown = inf/NaN/<=0)")
    warped = warp_right_to_left(rt, d)
    err = np.abs(warped - lt)[mask]
    return float(err.mean()), mask


@dataclass(frozen=True)
class ConsistencyResult:
    """Warp errors (grey levels) of an SR pair and its HR pair on the same pixels."""

    sr: float
    hr: float
    valid_fraction: float

    @property
    def excess(self) -> float:
        """SR error minus HR error: the inconsistency added by super-resolution."""
        return self.sr - self.hr

    def as_dict(self) -> dict[str, float]:
        """Plain dict for reports."""
        return {"warp_error_sr": self.sr, "warp_error_hr": self.hr, "excess": self.excess,
                "valid_fraction": self.valid_fraction}


def stereo_consistency(sr_left: Image, sr_right: Image, hr_left: Image, hr_right: Image,
                       disparity: np.ndarray,
                       occlusion_tol: float | None = 0.5) -> ConsistencyResult:
    """Warp errors of the SR pair and of the HR pair with the HR left-view ``disparity``.

    All four views at HR size; ``disparity`` (H, W) in HR pixels.
    """
    e_sr, mask = warp_error(sr_left, sr_right, disparity, occlusion_tol)
    e_hr, _ = warp_error(hr_left, hr_right, disparity, occlusion_tol)
    return ConsistencyResult(sr=e_sr, hr=e_hr, valid_fraction=float(mask.mean()))


def disparity_mae(disp_sr: np.ndarray, disp_hr: np.ndarray) -> float:
    """Mean absolute difference of two (H, W) disparity maps over pixels finite in both."""
    a = np.asarray(disp_sr, dtype=np.float64)
    b = np.asarray(disp_hr, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise InputError(f"disparity maps must be (H, W) of the same size, got {a.shape} and "
                         f"{b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        raise InputError("the disparity maps have no pixel finite in both")
    return float(np.abs(a - b)[ok].mean())


def ntire_perceptual_score(lpips_left: float, lpips_right: float, disp_sr: np.ndarray,
                           disp_hr: np.ndarray) -> float:
    """NTIRE 2023 stereo SR track 2 score: ``1 - 0.5 LPIPS(L) - 0.5 LPIPS(R) - MAE(disp)``.

    ``lpips_left``/``lpips_right``: LPIPS of each SR view against its HR view; ``disp_sr`` /
    ``disp_hr``: (H, W) disparities that one stereo matcher (the user's choice; the challenge
    used RAFT-Stereo) computed on the SR pair and on the HR pair, in whatever unit the matcher
    returns (the MAE enters the score unscaled). Higher is better.
    """
    for name, v in (("lpips_left", lpips_left), ("lpips_right", lpips_right)):
        if not np.isfinite(v) or v < 0:
            raise InputError(f"{name} must be a finite LPIPS value >= 0, got {v}")
    return 1.0 - 0.5 * float(lpips_left) - 0.5 * float(lpips_right) - disparity_mae(disp_sr,
                                                                                     disp_hr)
