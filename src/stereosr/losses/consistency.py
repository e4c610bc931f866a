"""Stereo consistency loss: the SR left view should agree with the SR right view warped onto it.

Disparity convention (rectified pairs): the left pixel (y, x) shows the same point as the right
pixel (y, x - d_left(y, x)); the right pixel (y, x) the same as the left pixel
(y, x + d_right(y, x)). Disparities are in pixels of the images given (SR resolution: multiply
LR disparities by the scale). Warping samples along rows with linear interpolation; pixels whose
source falls outside the other view, or whose disparity is unknown, are excluded, as are pixels
where a given ``mask`` is 0 (e.g. occlusions). Unknown means not finite or <= 0: the package's
one rule (:func:`stereosr.stereo.known_disparity`), shared with the consistency metric, so
KITTI maps (0 = unknown) and Middlebury maps (``inf`` = unknown) both work as they are.

Alternatively the correspondence can come from a row-wise cross-view attention map ``A`` of
shape (B, H, W, W) whose rows sum to 1: left_hat[..., y, x] = sum_x' A[b, y, x, x'] *
right[..., y, x'] (``attention_r2l``), and likewise right_hat from ``attention_l2r``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..stereo import known_disparity
from ._common import DISTANCES, check_choice, check_images, check_same_shape, pointwise

__all__ = ["StereoConsistencyLoss", "attention_consistency_loss", "disparity_consistency_loss",
           "sample_along_rows", "warp_by_attention"]


def _disparity_map(disparity: Tensor | float, like: Tensor, what: str) -> Tensor:
    """Disparity as (B, 1, H, W) in ``like``'s dtype/device; accepts scalars and (B, H, W)."""
    b, _, h, w = like.shape
    d = torch.as_tensor(disparity, dtype=like.dtype, device=like.device)
    if d.ndim == 0:
        return d.expand(b, 1, h, w)
    if d.ndim == 3:
        d = d.unsqueeze(1)
    if d.ndim != 4 or d.shape[1] != 1 or tuple(d.shape[-2:]) != (h, w) or d.shape[0] not in (1, b):
        raise InputError(f"{what} must be a number or a (B, 1, {h}, {w}) map, got "
                         f"{tuple(d.shape)}")
    return d.expand(b, 1, h, w)


def sample_along_rows(src: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """Linear interpolation of (B, C, H, W) ``src`` at columns ``x`` (B, 1, H, W) of each row.

    Returns (values (B, C, H, W), valid (B, 1, H, W) bool: x finite and within [0, W - 1]).
    Differentiable in ``src`` and in ``x`` (inside the image).
    """
    b, c, h, w = src.shape
    if w < 2:
        raise InputError(f"images must be at least 2 pixels wide, got width {w}")
    finite = torch.isfinite(x)
    valid = finite & (x >= 0) & (x <= w - 1)
    xs = torch.where(finite, x, torch.zeros_like(x)).clamp(0, w - 1)
    x0 = xs.detach().floor().clamp(max=w - 2)
    frac = xs - x0
    i0 = x0.long().expand(b, c, h, w)
    v0 = src.gather(3, i0)
    v1 = src.gather(3, i0 + 1)
    return v0 + frac * (v1 - v0), valid


def warp_by_attention(src: Tensor, attention: Tensor) -> Tensor:
    """(B, C, H, W) ``src`` mixed along rows by (B, H, W, W) ``attention``: out[..., x] =
    sum_x' attention[b, y, x, x'] * src[..., y, x']."""
    b, _, h, w = src.shape
    if attention.shape != (b, h, w, w):
        raise InputError(f"attention map must be (B, H, W, W) = {(b, h, w, w)}, got "
                         f"{tuple(attention.shape)}")
    return torch.einsum("byxz,bcyz->bcyx", attention.to(src.dtype), src)


def _masked_mean(err: Tensor, valid: Tensor) -> Tensor:
    """Mean of (B, C, H, W) ``err`` over pixels where (B, 1, H, W) ``valid`` is non-zero."""
    v = valid.to(err.dtype)
    count = v.sum() * err.shape[1]
    return (err * v).sum() / count.clamp_min(1.0)


def _mask(mask: Tensor | None, like: Tensor, what: str) -> Tensor:
    b, _, h, w = like.shape
    if mask is None:
        return torch.ones(b, 1, h, w, dtype=torch.bool, device=like.device)
    m = mask.unsqueeze(1) if mask.ndim == 3 else mask
    if m.ndim != 4 or m.shape[1] != 1 or tuple(m.shape[-2:]) != (h, w) or m.shape[0] not in (1, b):
        raise InputError(f"{what} must be a (B, 1, {h}, {w}) map, got {tuple(mask.shape)}")
    return m.expand(b, 1, h, w) > 0


def disparity_consistency_loss(left: Tensor, right: Tensor, disparity: Tensor | float, *,
                               disparity_right: Tensor | float | None = None,
                               mask: Tensor | None = None, mask_right: Tensor | None = None,
                               distance: str = "l1") -> Tensor:
    """Scalar mean distance between ``left`` and ``right`` warped by ``disparity`` (left view).

    ``left``, ``right``: (B, C, H, W). With ``disparity_right`` the right view is also compared
    with the warped left view and the two directions are averaged. Pixels with no valid source
    do not count; with none at all the loss is 0 (still attached to the graph).
    """
    check_same_shape(left, right, ("left view", "right view"))
    kind = check_choice(distance, DISTANCES, "consistency distance")
    width = left.shape[-1]
    cols = torch.arange(width, dtype=left.dtype, device=left.device).view(1, 1, 1, width)
    d_l = _disparity_map(disparity, left, "disparity")
    left_hat, valid = sample_along_rows(right, cols - d_l)
    valid = valid & known_disparity(d_l) & _mask(mask, left, "mask")
    loss = _masked_mean(pointwise(left, left_hat, kind), valid)
    if disparity_right is None:
        return loss
    d_r = _disparity_map(disparity_right, right, "disparity_right")
    right_hat, valid_r = sample_along_rows(left, cols + d_r)
    valid_r = valid_r & known_disparity(d_r) & _mask(mask_right, right, "mask_right")
    return 0.5 * (loss + _masked_mean(pointwise(right, right_hat, kind), valid_r))


def attention_consistency_loss(left: Tensor, right: Tensor, attention_r2l: Tensor, *,
                               attention_l2r: Tensor | None = None, mask: Tensor | None = None,
                               mask_right: Tensor | None = None,
                               distance: str = "l1") -> Tensor:
    """Scalar mean distance between ``left`` and ``right`` carried over by ``attention_r2l``.

    ``attention_r2l``: (B, H, W, W), row x of image row y holds the weights of the right pixels
    for the left pixel x (rows sum to 1), at the resolution of the images.
    """
    check_same_shape(left, right, ("left view", "right view"))
    kind = check_choice(distance, DISTANCES, "consistency distance")
    loss = _masked_mean(pointwise(left, warp_by_attention(right, attention_r2l), kind),
                        _mask(mask, left, "mask"))
    if attention_l2r is None:
        return loss
    other = _masked_mean(pointwise(right, warp_by_attention(left, attention_l2r), kind),
                         _mask(mask_right, right, "mask_right"))
    return 0.5 * (loss + other)


class StereoConsistencyLoss(nn.Module):
    """``forward(sr_left, sr_right, disparity=None, attention=None, ...)`` -> scalar.

    Exactly one of ``disparity`` (left-view disparity, see the module docstring) and
    ``attention`` (right-to-left attention map) must be given; the ``*_right``/``l2r``
    counterparts and masks are optional.
    """

    def __init__(self, distance: str = "l1") -> None:
        super().__init__()
        self.distance = check_choice(distance, DISTANCES, "consistency distance")

    def forward(self, sr_left: Tensor, sr_right: Tensor, disparity: Tensor | float | None = None,
                attention: Tensor | None = None, *,
                disparity_right: Tensor | float | None = None,
                attention_l2r: Tensor | None = None, mask: Tensor | None = None,
                mask_right: Tensor | None = None) -> Tensor:
        check_images(sr_left, "left view")
        if (disparity is None) == (attention is None):
            raise InputError("stereo consistency needs either a disparity or an attention map")
        if disparity is not None:
            return disparity_consistency_loss(
                sr_left, sr_right, disparity, disparity_right=disparity_right, mask=mask,
                mask_right=mask_right, distance=self.distance)
        assert attention is not None
        return attention_consistency_loss(
            sr_left, sr_right, attention, attention_l2r=attention_l2r, mask=mask,
            mask_right=mask_right, distance=self.distance)
