"""Test-time Local Converter (TLC) for NAFSSR.

Networks trained on small patches see global statistics (the channel attention's global average
pool) over a small area. At inference on large images, TLC replaces that global pool with a local
average over a window 1.5x the training patch, which is what the official NAFSSR does at test
time and what its published numbers assume. The conversion is explicit: call :func:`enable_tlc`
(``load_model`` does it by default) or :func:`disable_tlc`.

The pooling maths live in :mod:`stereosr.models.pooling`.
"""

from __future__ import annotations

from torch import nn

from .blocks import NAFBlock
from .pooling import LocalAvgPool2d

__all__ = ["DEFAULT_TRAIN_SIZE", "disable_tlc", "enable_tlc", "tlc_kernel", "tlc_train_size"]

DEFAULT_TRAIN_SIZE = (30, 90)


def tlc_kernel(train_size: tuple[int, int]) -> tuple[int, int]:
    """Pooling window (H, W) for a training LR patch size: 1.5x, rounded down (30x90 -> 45x135)."""
    return (int(train_size[0] * 1.5), int(train_size[1] * 1.5))


def _sca_modules(model: nn.Module) -> list[nn.Sequential]:
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
