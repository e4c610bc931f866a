"""Row tiling for large stereo pairs.

NAFSSR's cross-attention runs along image rows (epipolar lines), so tiles always take whole rows:
each tile is a band of full-width rows, every SCAM still sees the whole epipolar line, and only
the vertical context is cut. Bands overlap and are blended with linear ramps.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..models.tlc import tlc_kernel, tlc_train_size

__all__ = [
    "StereoFn",
    "auto_tile_rows",
    "available_memory_bytes",
    "default_overlap",
    "row_bands",
    "tiled_forward",
]

StereoFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

#: Overlap (LR rows) for a model without TLC metadata, and the least one used.
_MIN_OVERLAP = 24


def default_overlap(model: object) -> int:
    """LR rows of context on each side of a band for ``model``: the height of its TLC pooling
    window (1.5x the training patch height, 45 rows for 30x90 patches), at least 24.

    A channel attention with TLC averages over a window centred on each pixel, so a row near a
    band's edge sees other statistics than in the whole image unless the band holds half a
    window beyond it, and the blocks' convolutions reach further still. Measured on Motorcycle
    x4 with the default model (width 32, 32 blocks, window 45 rows) and bands of 48 and 64 rows:
    the tiled output is at most 1.0 grey level (of 255) off the whole-image one with 24 rows of
    overlap, 0.39 with 32, 0.11 with 40 and 48. An ONNX model
    (:class:`~stereosr.infer.onnx_backend.OnnxStereoModel`) gives its training size in its
    metadata; models that pool globally (no TLC) or say nothing get 24 rows.
    """
    if isinstance(model, nn.Module):
        size = tlc_train_size(model)
    else:
        size = getattr(getattr(model, "config", None), "tlc_train_size", None)
    return _MIN_OVERLAP if size is None else max(_MIN_OVERLAP, tlc_kernel(size)[0])


def available_memory_bytes(device: torch.device) -> int:
    """Free memory usable for inference on ``device``: 80 % of the GPU's free memory
    (``torch.cuda.mem_get_info``) on CUDA, half of the available RAM on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.8)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
    return int(pages * os.sysconf("SC_PAGE_SIZE") // 2) if pages else 4 << 30


def auto_tile_rows(h: int, budget: int, overlap: int, estimate: Callable[[int], int]
                   ) -> int | None:
    """Rows per tile so that one tile fits ``budget`` bytes; ``None`` when no tiling is needed.

    ``estimate(rows)`` is the model's peak memory for a band of ``rows`` full-width LR rows
    (e.g. ``lambda r: model.estimate_memory(r, w)``); a band holds its core plus ``overlap``
    rows on each side. At least 8 rows per tile.
    """
    if estimate(h) <= budget:
        return None
    fixed = estimate(0)
    per_row = max(1, estimate(1) - fixed)
    rows = max(1, (budget - fixed) // per_row) - 2 * overlap
    return int(max(8, min(h, rows)))


def row_bands(h: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Bands as (in_start, in_end, core_start, core_end) in LR rows.

    Cores partition [0, h) in steps of ``tile``; each band extends its core by ``overlap`` rows
    on each side (clipped to the image).
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1 row, got {tile}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    bands = []
    for c0 in range(0, h, tile):
        c1 = min(h, c0 + tile)
        bands.append((max(0, c0 - overlap), min(h, c1 + overlap), c0, c1))
    return bands


def _ramp_weights(n_rows: int, lo_ramp: int, hi_ramp: int, device: torch.device) -> Tensor:
    """Per-row blend weights: rising over ``lo_ramp`` rows, falling over ``hi_ramp`` rows."""
    wts = torch.ones(n_rows, device=device)
    if lo_ramp > 0:
        wts[:lo_ramp] = (torch.arange(lo_ramp, device=device, dtype=torch.float32) + 0.5) / lo_ramp
    if hi_ramp > 0:
        ramp = (torch.arange(hi_ramp, device=device, dtype=torch.float32) + 0.5) / hi_ramp
        wts[n_rows - hi_ramp:] = torch.minimum(wts[n_rows - hi_ramp:], ramp.flip(0))
    return wts


def tiled_forward(fn: StereoFn, left: Tensor, right: Tensor, scale: int, tile: int,
                  overlap: int = _MIN_OVERLAP) -> tuple[Tensor, Tensor]:
    """Run ``fn`` on bands of whole rows of (B, C, h, w) views and blend the SR bands.

    Within the overlap of two bands the outputs are cross-faded linearly; elsewhere each output
    row comes from the single band whose core holds it.
    """
    b, c, h, w = left.shape
    bands = row_bands(h, tile, overlap)
    if len(bands) == 1:
        return fn(left, right)
    s = scale
    out_l = torch.zeros(b, c, h * s, w * s, device=left.device, dtype=torch.float32)
    out_r = torch.zeros_like(out_l)
    norm = torch.zeros(h * s, device=left.device, dtype=torch.float32)
    for i, (a0, a1, c0, c1) in enumerate(bands):
        sr_l, sr_r = fn(left[:, :, a0:a1], right[:, :, a0:a1])
        # Blend zone: half the overlap on each side of a core boundary (at HR resolution).
        half = overlap // 2
        lo = (c0 - half) if i > 0 else a0
        hi = (c1 + half) if i < len(bands) - 1 else a1
        lo, hi = max(lo, a0), min(hi, a1)
        ramp_lo = (2 * half * s) if i > 0 else 0
        ramp_hi = (2 * half * s) if i < len(bands) - 1 else 0
        rows = (hi - lo) * s
        wts = _ramp_weights(rows, min(ramp_lo, rows), min(ramp_hi, rows), left.device)
        o0, o1 = (lo - a0) * s, (hi - a0) * s
        view = wts.view(1, 1, -1, 1)
        out_l[:, :, lo * s:hi * s] += sr_l[:, :, o0:o1].float() * view
        out_r[:, :, lo * s:hi * s] += sr_r[:, :, o0:o1].float() * view
        norm[lo * s:hi * s] += wts
    norm = norm.view(1, 1, -1, 1)
    return (out_l / norm).to(left.dtype), (out_r / norm).to(left.dtype)
