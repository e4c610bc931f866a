"""Pixel losses between an SR batch and its ground truth: L1, MSE, Charbonnier.

All take (B, C, H, W) float tensors of the same shape (values in [0, 1] by convention, not
enforced: outputs are not clamped during training) and return the mean over every element.
For a stereo pair, pass both views concatenated along the batch dimension.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import InputError
from ._common import check_same_shape

__all__ = ["CharbonnierLoss", "L1Loss", "MSELoss", "charbonnier_loss", "l1_loss", "mse_loss"]


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error, a scalar."""
    check_same_shape(pred, target)
    return (pred - target).abs().mean()


def mse_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error, a scalar."""
    check_same_shape(pred, target)
    d = pred - target
    return (d * d).mean()


def charbonnier_loss(pred: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean of sqrt((pred - target)^2 + eps^2), a smooth L1 (``eps`` in intensity units).

    Equals ``eps`` for identical inputs and approaches L1 for errors much larger than ``eps``.
    """
    check_same_shape(pred, target)
    if not eps > 0:
        raise InputError(f"Charbonnier eps must be > 0, got {eps}")
    d = pred - target
    return torch.sqrt(d * d + eps * eps).mean()


class L1Loss(nn.Module):
    """Module form of :func:`l1_loss`."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return l1_loss(pred, target)


class MSELoss(nn.Module):
    """Module form of :func:`mse_loss`."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return mse_loss(pred, target)


class CharbonnierLoss(nn.Module):
    """Module form of :func:`charbonnier_loss`."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        if not eps > 0:
            raise InputError(f"Charbonnier eps must be > 0, got {eps}")
        self.eps = float(eps)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return charbonnier_loss(pred, target, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
