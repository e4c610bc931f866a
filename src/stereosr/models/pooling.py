"""Local average pooling maths of TLC (test-time local converter).

The local mean is one formula for every input size: with k1 = min(H, kh) and k2 = min(W, kw),
average every 'valid' k1 x k2 window and replicate-pad the result back to H x W (top/left pad
floor, bottom/right ceil of the difference). A map no larger than the window gets a single
window, i.e. the global mean. Because there is no branch on the input size, the same code
exports to ONNX with dynamic H and W (sizes enter through ``torch.sym_min`` and ``narrow``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .tracing import is_tracing

__all__ = [
    "LocalAvgPool2d",
    "box_mean",
    "local_avg_pool",
    "local_mean_full",
    "replicate_to",
]

#: A size that is an ``int`` in eager mode and a ``torch.SymInt`` while exporting.
SymSize = Any


def _box_sum(x: Tensor, dim: int, k: SymSize, shortcut: bool) -> Tensor:
    """Sums of ``x`` over every length-``k`` window along ``dim`` (``size - k + 1`` of them)."""
    size = x.shape[dim]
    if shortcut and k == size:
        return x.sum(dim, keepdim=True)
    cs = x.cumsum(dim)
    cs = torch.cat([torch.zeros_like(cs.narrow(dim, 0, 1)), cs], dim)
    n = size - k + 1
    return cs.narrow(dim, k, n) - cs.narrow(dim, 0, n)


def box_mean(x: Tensor, kernel: tuple[int, int], dims: tuple[int, int] = (-2, -1)) -> Tensor:
    """Mean of every valid window of ``x`` over the two spatial ``dims`` (H dim, W dim).

    The window is (min(H, kh), min(W, kw)); the result has H - k1 + 1 and W - k2 + 1 entries
    along those dims (1 x 1 when the map fits the window: the global mean). Sums are taken in
    float32 (integral image along W, then along H) and returned in ``x``'s dtype.
    """
    hd, wd = (d % x.ndim for d in dims)
    h, w = x.shape[hd], x.shape[wd]
    k1 = torch.sym_min(h, int(kernel[0]))
    k2 = torch.sym_min(w, int(kernel[1]))
    shortcut = not is_tracing()
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    s = _box_sum(_box_sum(xf, wd, k2, shortcut), hd, k1, shortcut)
    return (s / (k1 * k2)).to(x.dtype)


def _window_sums_full(x: Tensor, dim: int, k: SymSize) -> Tensor:
    """Window sums along ``dim`` already replicate-padded to the input size: output ``i`` holds
    the sum of the valid window starting at clamp(i - (k - 1) // 2, 0, size - k)."""
    size = x.shape[dim]
    cs = x.cumsum(dim)
    cs = torch.cat([torch.zeros_like(cs.narrow(dim, 0, 1)), cs], dim)
    start = (torch.arange(size, device=x.device) - (k - 1) // 2).clamp(0, size - k)
    return cs.index_select(dim, start + k) - cs.index_select(dim, start)


def local_mean_full(x: Tensor, kernel: tuple[int, int], dims: tuple[int, int] = (-2, -1)
                    ) -> Tensor:
    """Same values as ``replicate_to(box_mean(x))`` at full size, computed with tensors whose
    sizes are the input's only (no size that may be 1): the form used for export, where
    symbolic sizes must not depend on which side of the window the input falls."""
    hd, wd = (d % x.ndim for d in dims)
    k1 = torch.sym_min(x.shape[hd], int(kernel[0]))
    k2 = torch.sym_min(x.shape[wd], int(kernel[1]))
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    s = _window_sums_full(_window_sums_full(xf, wd, k2), hd, k1)
    return (s / (k1 * k2)).to(x.dtype)


def replicate_to(s: Tensor, dim: int, size: SymSize, expand: bool = True) -> Tensor:
    """Replicate-pad ``s`` along ``dim`` to ``size`` (pad before = floor(diff / 2)).

    With ``expand=False`` a length-1 ``dim`` is returned unchanged, to broadcast later.
    """
    dim = dim % s.ndim
    o = s.shape[dim]
    if not is_tracing() and o == 1:
        if not expand:
            return s
        shape = list(s.shape)
        shape[dim] = size
        return s.expand(shape)
    idx = torch.arange(size, device=s.device) - (size - o) // 2
    idx = idx.clamp(0, o - 1)
    return s.index_select(dim, idx)


def local_avg_pool(x: Tensor, kernel: tuple[int, int]) -> Tensor:
    """Local mean of ``x`` (B, C, H, W) over ``kernel`` windows, same size out.

    A plain global mean when the map is no larger than the kernel in both dimensions. Otherwise
    the mean over every 'valid' k1 x k2 window (k1 = min(H, kh), k2 = min(W, kw)) from an
    integral image, replicate-padded back to H x W (top/left floor, bottom/right ceil of the
    difference), as the official converter does.
    """
    if is_tracing():
        return local_mean_full(x, kernel, (-2, -1))
    h, w = x.shape[-2:]
    m = box_mean(x, kernel, (-2, -1))
    return replicate_to(replicate_to(m, -1, w), -2, h)


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
