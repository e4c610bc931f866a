"""Paired random crops and stereo-consistent augmentations for training.

All functions take (H, W, C) numpy arrays (any dtype) and a ``numpy.random.Generator``; they
draw their random numbers in a fixed order, so a given generator state always gives the same
sample. Views are ``(lr_left, lr_right, hr_left, hr_right)`` with HR = ``scale`` x LR.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import InputError

__all__ = ["StereoSample", "augment_stereo", "cut_window", "flip_swap", "random_paired_crop",
           "random_window", "shift_margin", "shift_right_view", "shifted_crop", "texture_energy",
           "textured_crop", "textured_window", "view_gain"]


class StereoSample(NamedTuple):
    """LR and HR views of a stereo pair, each (H, W, C); HR is ``scale`` times larger."""

    lr_left: np.ndarray
    lr_right: np.ndarray
    hr_left: np.ndarray
    hr_right: np.ndarray


def random_window(sample: StereoSample, patch_hw: tuple[int, int], scale: int,
                  rng: np.random.Generator) -> tuple[int, int]:
    """Top-left (row, column) in LR pixels of a uniformly drawn (ph, pw) LR window of the pair.

    Draws two integers from ``rng``. Raises InputError when the window does not fit or an HR
    view is smaller than ``scale`` times its LR view.
    """
    ph, pw = patch_hw
    h, w = sample.lr_left.shape[:2]
    if ph > h or pw > w:
        raise InputError(f"LR patch {ph}x{pw} is larger than the LR image {h}x{w}; use a "
                         "smaller data.lr_patch or larger images")
    for lr, hr in ((sample.lr_left, sample.hr_left), (sample.lr_right, sample.hr_right)):
        if hr.shape[0] < scale * lr.shape[0] or hr.shape[1] < scale * lr.shape[1]:
            raise InputError(f"HR view {hr.shape[:2]} is smaller than {scale} x LR view "
                             f"{lr.shape[:2]}")
    return int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))


def cut_window(sample: StereoSample, top: int, left: int, patch_hw: tuple[int, int],
               scale: int) -> StereoSample:
    """The LR window at (top, left) of size (ph, pw) in both views and the matching HR window."""
    ph, pw = patch_hw
    t, l, s = top * scale, left * scale, scale
    return StereoSample(
        sample.lr_left[top:top + ph, left:left + pw],
        sample.lr_right[top:top + ph, left:left + pw],
        sample.hr_left[t:t + ph * s, l:l + pw * s],
        sample.hr_right[t:t + ph * s, l:l + pw * s],
    )


def random_paired_crop(sample: StereoSample, patch_hw: tuple[int, int], scale: int,
                       rng: np.random.Generator) -> StereoSample:
    """Crop the same (ph, pw) LR window from both views and the matching HR window.

    The window is at the same position in the left and right view, as in the official
    patches (rows stay epipolar lines, disparities are kept). Draws two integers from ``rng``.
    """
    top, left = random_window(sample, patch_hw, scale, rng)
    return cut_window(sample, top, left, patch_hw, scale)


def texture_energy(img: np.ndarray) -> float:
    """Mean gradient magnitude of an (H, W[, C]) image in [0, 1]: ``mean(sqrt(gx^2 + gy^2))``
    of the channel mean, with forward differences (units: intensity per pixel). Sky and bokeh
    score below 0.01; foliage, brick and street scenes about 0.02-0.05 (at half size)."""
    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 3:
        a = a.mean(axis=2)
    gx = np.diff(a, axis=1)[:-1, :]
    gy = np.diff(a, axis=0)[:, :-1]
    return float(np.sqrt(gx * gx + gy * gy).mean())


def textured_window(sample: StereoSample, patch_hw: tuple[int, int], scale: int,
                    rng: np.random.Generator, tries: int = 1) -> tuple[int, int]:
    """Top-left LR position of the most textured of ``tries`` :func:`random_window` draws.

    Texture is :func:`texture_energy` of the LR left window (any value range: only the order
    matters); the first draw wins ties. Biasing crops towards edges and fine detail spends
    training on the regions that dominate the SR error (smooth regions are nearly solved by
    bicubic). Draws ``2 * tries`` integers. Raises InputError when ``tries < 1``.
    """
    if int(tries) != tries or tries < 1:
        raise InputError(f"tries must be a positive integer, got {tries!r}")
    best = random_window(sample, patch_hw, scale, rng)
    if tries == 1:
        return best
    ph, pw = patch_hw

    def energy(pos: tuple[int, int]) -> float:
        return texture_energy(sample.lr_left[pos[0]:pos[0] + ph, pos[1]:pos[1] + pw])

    best_energy = energy(best)
    for _ in range(int(tries) - 1):
        pos = random_window(sample, patch_hw, scale, rng)
        e = energy(pos)
        if e > best_energy:
            best, best_energy = pos, e
    return best


def textured_crop(sample: StereoSample, patch_hw: tuple[int, int], scale: int,
                  rng: np.random.Generator, tries: int = 1) -> StereoSample:
    """The window of :func:`textured_window`, cut from both views (``tries=1`` is exactly
    :func:`random_paired_crop`)."""
    top, left = textured_window(sample, patch_hw, scale, rng, tries)
    return cut_window(sample, top, left, patch_hw, scale)


def flip_swap(sample: StereoSample) -> StereoSample:
    """Mirror both views left-right and swap them, so the result is again a left/right pair.

    Mirroring turns the right camera into the left one of the mirrored scene: new left =
    mirrored right view, new right = mirrored left view.
    """
    lr_l, lr_r, hr_l, hr_r = (a[:, ::-1] for a in sample)
    return StereoSample(lr_r, lr_l, hr_r, hr_l)


def augment_stereo(sample: StereoSample, rng: np.random.Generator, *, hflip: bool = True,
                   vflip: bool = True, rgb_perm: bool = True) -> StereoSample:
    """Random horizontal flip + left/right swap, vertical flip, and a channel permutation
    shared by both views (the official NAFSSR augmentations; no rotation, which would break
    the epipolar rows).

    Draw order: hflip coin, vflip coin, permutation; a disabled step draws nothing.
    """
    out = sample
    if hflip and rng.random() < 0.5:
        out = flip_swap(out)
    if vflip and rng.random() < 0.5:
        out = StereoSample(*(a[::-1] for a in out))
    if rgb_perm:
        c = out.lr_left.shape[2]
        perm = rng.permutation(c)
        out = StereoSample(*(a[:, :, perm] for a in out))
    return out


def view_gain(sample: StereoSample, rng: np.random.Generator, strength: float) -> StereoSample:
    """Give the right view its own exposure and colour balance, as two real cameras have.

    The right LR and HR views are multiplied by the same per-channel gains
    ``g_c = (1 + e) * (1 + b_c)``, ``e ~ U(-strength, strength)`` (exposure) and
    ``b_c ~ U(-strength / 3, strength / 3)`` (white balance), then clipped to [0, 1]. LR stays
    the bicubic downscale of HR (both are linear in the gains, up to the clipping), so the
    target of each view still matches its input; only the match between the views becomes
    inexact. Real rectified pairs differ by about this much (Middlebury 2014 Motorcycle: the
    right view is 1.2-1.5 % darker per channel). The views must be (H, W, 3) float arrays in [0, 1];
    the left view is returned as is. Draws four numbers; ``strength`` 0 returns the sample
    unchanged and draws nothing. Raises InputError unless ``0 <= strength < 1``.
    """
    if not 0.0 <= strength < 1.0:
        raise InputError(f"view gain strength must be in [0, 1), got {strength!r}")
    if strength == 0.0:
        return sample
    exposure = rng.uniform(-strength, strength)
    balance = rng.uniform(-strength / 3.0, strength / 3.0, size=3)
    gains = ((1.0 + exposure) * (1.0 + balance)).astype(np.float32)
    return StereoSample(sample.lr_left, np.clip(sample.lr_right * gains, 0.0, 1.0),
                        sample.hr_left, np.clip(sample.hr_right * gains, 0.0, 1.0))


def shift_margin(max_shift: int, scale: int) -> int:
    """LR pixels to crop beyond a patch so that :func:`shift_right_view` of the larger window,
    cut back by this margin on every side, equals the shift applied to the whole image
    (:func:`shifted_crop` does this).

    MATLAB bicubic at ``1/scale`` reads HR rows up to ``2 * scale`` pixels either side of an LR
    pixel's centre (kernel width 4 LR pixels), and the shift brings in ``max_shift`` mirrored
    rows at one edge, so ``2 + ceil(max_shift / scale)`` LR pixels suffice.
    """
    return 2 + -(-int(max_shift) // int(scale))


def shift_right_view(sample: StereoSample, shift: int, scale: int) -> StereoSample:
    """Move the right view ``shift`` HR rows down (up when negative), as a residual vertical
    misalignment of a real rectified pair (a fraction ``shift / scale`` of an LR pixel).

    The right HR view is shifted with the rows it uncovers filled by mirroring its edge (MATLAB's
    symmetric boundary rule), and the right LR view is made again from it with MATLAB bicubic
    ``imresize(hr, 1/scale)`` (integer images stay integer, rounded as on disk). The LR views must
    therefore be the bicubic downscale of the HR views. The left view is returned as is;
    ``shift`` 0 returns ``sample``. Only the rows within :func:`shift_margin` of the top and
    bottom edge differ from shifting a larger image, so crop a margin that large around the
    patch first. Raises InputError when ``|shift|`` is not below the HR height.
    """
    from .datasets import bicubic_lr

    shift = int(shift)
    if shift == 0:
        return sample
    hr = sample.hr_right
    k = abs(shift)
    if k >= hr.shape[0]:
        raise InputError(f"vertical shift of {shift} rows is not smaller than the HR view "
                         f"({hr.shape[0]} rows)")
    pad = ((k, 0), (0, 0), (0, 0)) if shift > 0 else ((0, k), (0, 0), (0, 0))
    padded = np.pad(hr, pad, mode="symmetric")
    moved = padded[:hr.shape[0]] if shift > 0 else padded[k:]
    return StereoSample(sample.lr_left, bicubic_lr(moved, scale), sample.hr_left, moved)


def shifted_crop(sample: StereoSample, top: int, left: int, patch_hw: tuple[int, int],
                 scale: int, shift: int) -> StereoSample:
    """The window at (top, left) of the pair whose right view is moved ``shift`` HR rows
    (:func:`shift_right_view` of the whole pair), computed on the window and a margin of
    :func:`shift_margin` LR pixels only. Where the margin would leave the image it stops at the
    edge, where the mirroring of the window is the mirroring of the whole view, so the result
    is exact everywhere. ``shift`` 0 is :func:`cut_window`.
    """
    if shift == 0:
        return cut_window(sample, top, left, patch_hw, scale)
    ph, pw = patch_hw
    h, w = sample.lr_left.shape[:2]
    m = shift_margin(abs(shift), scale)
    y0, x0 = max(0, top - m), max(0, left - m)
    y1, x1 = min(h, top + ph + m), min(w, left + pw + m)
    window = shift_right_view(cut_window(sample, y0, x0, (y1 - y0, x1 - x0), scale), shift, scale)
    return cut_window(window, top - y0, left - x0, patch_hw, scale)
