"""Paired random crops and stereo-consistent augmentations for training.

All functions take (H, W, C) numpy arrays (any dtype) and a ``numpy.random.Generator``; they
draw their random numbers in a fixed order, so a given generator state always gives the same
sample. Views are ``(lr_left, lr_right, hr_left, hr_right)`` with HR = ``scale`` x LR.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import InputError

__all__ = ["StereoSample", "augment_stereo", "flip_swap", "random_paired_crop"]


class StereoSample(NamedTuple):
    """LR and HR views of a stereo pair, each (H, W, C); HR is ``scale`` times larger."""

    lr_left: np.ndarray
    lr_right: np.ndarray
    hr_left: np.ndarray
    hr_right: np.ndarray


def random_paired_crop(sample: StereoSample, patch_hw: tuple[int, int], scale: int,
                       rng: np.random.Generator) -> StereoSample:
    """Crop the same (ph, pw) LR window from both views and the matching HR window.

    The window is at the same position in the left and right view, as in the official
    patches (rows stay epipolar lines, disparities are kept). Draws two integers from ``rng``.
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
    top = int(rng.integers(0, h - ph + 1))
    left = int(rng.integers(0, w - pw + 1))
    t, l, s = top * scale, left * scale, scale
    return StereoSample(
        sample.lr_left[top:top + ph, left:left + pw],
        sample.lr_right[top:top + ph, left:left + pw],
        sample.hr_left[t:t + ph * s, l:l + pw * s],
        sample.hr_right[t:t + ph * s, l:l + pw * s],
    )


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
