"""Input checks and distances shared by the losses."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import InputError

DISTANCES: tuple[str, ...] = ("l1", "mse")


def check_choice(value: str, options: Sequence[str], what: str) -> str:
    """``value`` lower-cased when it is one of ``options``, else :class:`InputError`."""
    v = str(value).lower()
    if v not in options:
        raise InputError(f"{what} must be one of {', '.join(options)}, got {value!r}")
    return v


def check_images(x: Tensor, what: str, channels: int | None = None) -> None:
    """``x`` must be a floating (B, C, H, W) tensor (with ``channels`` channels when given)."""
    if not isinstance(x, Tensor):
        raise InputError(f"{what} must be a tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise InputError(f"{what} must be a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{what} must be a floating-point tensor, got {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise InputError(f"{what} must have {channels} channels, got shape {tuple(x.shape)}")


def check_same_shape(pred: Tensor, target: Tensor, names: tuple[str, str] = ("prediction",
                                                                           "target")) -> None:
    """Both (B, C, H, W) floating tensors of the same shape."""
    check_images(pred, names[0])
    check_images(target, names[1])
    if pred.shape != target.shape:
        raise InputError(f"{names[0]} and {names[1]} must have the same shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")


def pointwise(a: Tensor, b: Tensor, distance: str) -> Tensor:
    """Elementwise |a - b| ('l1') or (a - b)^2 ('mse')."""
    d = a - b
    return d.abs() if distance == "l1" else d * d


def mean_distance(a: Tensor, b: Tensor, distance: str) -> Tensor:
    """Scalar mean of |a - b| or (a - b)^2 over all elements."""
    return pointwise(a, b, distance).mean()


def per_sample_distance(a: Tensor, b: Tensor, distance: str) -> Tensor:
    """(B,) mean of |a - b| or (a - b)^2 over all but the first dimension."""
    return pointwise(a, b, distance).flatten(1).mean(dim=1)


def as_float(x: Tensor) -> Tensor:
    """``x`` in at least float32 (statistics in half precision lose too much)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
