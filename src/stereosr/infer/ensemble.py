"""Stereo self-ensemble: average over transforms that keep rows epipolar.

Valid transforms of a rectified pair: identity, vertical flip of both views, horizontal flip of
both views with left and right swapped (a mirrored scene seen by swapped cameras), and both.
Rotations are not valid (rows would stop being epipolar lines). Optionally the 6 permutations of
the RGB channels (the training augmentation), for 24 passes in all.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from .tiling import StereoFn

__all__ = ["apply_transform", "ensemble_transforms", "self_ensemble"]


def ensemble_transforms(rgb_permutations: bool = False) -> list[tuple[bool, bool, tuple[int, ...]]]:
    """List of (vflip, hflip_swap, channel_permutation) transforms."""
    perms = list(itertools.permutations(range(3))) if rgb_permutations else [(0, 1, 2)]
    return [(v, hs, p) for p in perms for v in (False, True) for hs in (False, True)]


def apply_transform(left: Tensor, right: Tensor, vflip: bool, hflip_swap: bool,
                    perm: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Apply one transform to a pair of (B, C, H, W) views (self-inverse apart from ``perm``)."""
    if perm != tuple(range(len(perm))):
        idx = torch.tensor(perm, device=left.device)
        left, right = left.index_select(1, idx), right.index_select(1, idx)
    if vflip:
        left, right = left.flip(-2), right.flip(-2)
    if hflip_swap:
        left, right = right.flip(-1), left.flip(-1)
    return left, right


def _invert(left: Tensor, right: Tensor, vflip: bool, hflip_swap: bool,
            perm: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    if hflip_swap:
        left, right = right.flip(-1), left.flip(-1)
    if vflip:
        left, right = left.flip(-2), right.flip(-2)
    if perm != tuple(range(len(perm))):
        inv = [0] * len(perm)
        for i, p in enumerate(perm):
            inv[p] = i
        idx = torch.tensor(inv, device=left.device)
        left, right = left.index_select(1, idx), right.index_select(1, idx)
    return left, right


def self_ensemble(fn: StereoFn, left: Tensor, right: Tensor,
                  rgb_permutations: bool = False) -> tuple[Tensor, Tensor]:
    """Mean of ``fn`` over the 4 (or 24) epipolar-preserving transforms of the pair."""
    acc_l: Tensor | None = None
    acc_r: Tensor | None = None
    transforms = ensemble_transforms(rgb_permutations)
    for vflip, hswap, perm in transforms:
        tl, tr = apply_transform(left, right, vflip, hswap, perm)
        ol, orr = fn(tl, tr)
        ol, orr = _invert(ol, orr, vflip, hswap, perm)
        acc_l = ol.float() if acc_l is None else acc_l + ol.float()
        acc_r = orr.float() if acc_r is None else acc_r + orr.float()
    assert acc_l is not None and acc_r is not None
    n = float(len(transforms))
    return (acc_l / n).to(left.dtype), (acc_r / n).to(left.dtype)
