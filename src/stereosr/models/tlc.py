"""Test-time Local Converter (TLC) for NAFSSR.

Networks trained on small patches see global statistics (the channel attention's global average
pool) over a small area. At inference on large images, TLC replaces that global pool with a local
average over a window 1.5x the training patch, which is what the official NAFSSR does at test
time and what its published numbers assume. The conversion is explicit: call :func:`enable_tlc`
(``load_model`` does it by default) or :func:`disable_tlc`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LocalAvgPool2d", "local_avg_pool", "tlc_kernel", "enable_tlc", "disable_tlc",
           "tlc_train_size"]

DEFAULT_TRAIN_SIZE = (30, 90)


def tlc_kernel(train_size: tuple[int, int]) -> tuple[int, int]:
    """Pooling window (H, W) for a training LR patch size: 1.5x, rounded down (30x90 -> 45x135)."""
    return (int(train_size[0] * 1.5), int(train_size[1] * 1.5))


def local_avg_pool(x: Tensor, kernel: tuple[int, int]) -> Tensor:
    """Local mean of ``x`` (B, C, H, W) over ``kernel`` windows, same size out.

    A plain global mean when the map is no larger than the kernel in both dimensions. Otherwise
    the mean over every 'valid' k1 x k2 window (k1 = min(H, kh), k2 = min(W, kw)) from an
    integral image, replicate-padded back to H x W (top/left floor, bottom/right ceil of the
    difference), as the official converter does.
    """
    h, w = x.shape[-2:]
    kh, kw = kernel
    if kh >= h and kw >= w:
        return x.mean(dim=(-2, -1), keepdim=True)
    k1, k2 = min(h, kh), min(w, kw)
    s = F.pad(x.cumsum(dim=-1).cumsum(dim=-2), (1, 0, 1, 0))
    out = (s[..., k1:, k2:] + s[..., :-k1, :-k2] - s[..., :-k1, k2:] - s[..., k1:, :-k2])
    out = out / (k1 * k2)
    oh, ow = out.shape[-2:]
    dh, dw = h - oh, w - ow
    return F.pad(out, (dw // 2, (dw + 1) // 2, dh // 2, (dh + 1) // 2), mode="replicate")


class LocalAvgPool2d(nn.Module):
    """Drop-in replacement of ``AdaptiveAvgPool2d(1)`` that pools over a local window."""

    def __init__(self, kernel: tuple[int, int], train_size: tuple[int, int]) -> None:
        super().__init__()
        self.kernel = (int(kernel[0]), int(kernel[1]))
        self.train_size = (int(train_size[0]), int(train_size[1]))

    def forward(self, x: Tensor) -> Tensor:
        return local_avg_pool(x, self.kernel)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, train_size={self.train_size}"


def _sca_modules(model: nn.Module) -> list[nn.Sequential]:
    from .blocks import NAFBlock

    return [m.sca for m in model.modules() if isinstance(m, NAFBlock)]


def enable_tlc(model: nn.Module, train_size: tuple[int, int] = DEFAULT_TRAIN_SIZE) -> nn.Module:
    """Replace every channel-attention global pool by a local pool; returns ``model`` (in place).

    ``train_size`` is the training LR patch (H, W); the window is 1.5x that (official rule).
    """
    if len(train_size) != 2 or min(train_size) < 1:
        raise ValueError(f"train_size must be two positive ints (H, W), got {train_size!r}")
    kernel = tlc_kernel(train_size)
    for sca in _sca_modules(model):
        sca[0] = LocalAvgPool2d(kernel, train_size)
    return model


def disable_tlc(model: nn.Module) -> nn.Module:
    """Restore global average pooling everywhere (the training form); returns ``model``."""
    for sca in _sca_modules(model):
        sca[0] = nn.AdaptiveAvgPool2d(1)
    return model


def tlc_train_size(model: nn.Module) -> tuple[int, int] | None:
    """The training size TLC was enabled with, or ``None`` when the model pools globally."""
    for sca in _sca_modules(model):
        pool = sca[0]
        if isinstance(pool, LocalAvgPool2d):
            return pool.train_size
        return None
    return None

