"""The model's memory policy: how SCAM's attention is computed on each device, how many rows
of attention go in one chunk, and how much memory one inference pass needs.

SCAM attends along image rows: per row a (W x W) matrix of logits. Three ways to compute it:

- ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention``, one call per direction.
  On CUDA its flash / memory-efficient kernels never hold the W x W matrix (memory O(W C) per
  row), so whole images are attended at once. Used on every non-CPU device and for half
  precision on the CPU.
- ``"shared"``: one matrix of exponentials per row shared by both softmax directions, computed a
  cache-sized chunk of rows at a time. Used on the CPU in float32/float64: on an idle machine
  and on one thread it measured faster than the CPU SDPA kernels, with less memory
  (``benchmarks/attention.py``; on a heavily loaded 2-core machine SDPA was faster, see
  docs/performance.md).
- ``"explicit"``: two materialised softmaxes over all rows; the static graph used while
  exporting (ONNX, ``torch.export``). Under ``torch.compile`` SDPA is used on whole images.

Rows per chunk are chosen here, in this order: an :func:`attention_chunk` override (a context,
never stored on the model), a ``chunk_rows`` fixed on the module, the whole image for fused
SDPA, else as many rows as fit the module's ``attention_budget_mb`` (per-row W x W floats).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator
from contextvars import ContextVar

import torch

from ..errors import InputError

__all__ = [
    "ATTENTION_BACKENDS",
    "CPU_BAND_PIXELS",
    "CPU_CACHE_BUDGET_MB",
    "DEVICE_BUDGET_MB",
    "attention_backend",
    "attention_chunk",
    "attention_rows",
    "band_rows",
    "check_budget",
    "check_rows",
    "chunk_override",
    "inference_peak_bytes",
]

ATTENTION_BACKENDS = ("sdpa", "shared", "explicit")

#: Memory of one chunk of W x W attention matrices on the CPU (MiB): small enough to stay in
#: cache, measured 1.8-2.3x faster than whole-image attention on a 2-core Xeon.
CPU_CACHE_BUDGET_MB = 4.0

#: Pixels per band when a block runs band by band on the CPU (see :func:`band_rows`): the
#: band's temporaries (2C-wide maps of 4096 pixels: 2 MiB at C = 64) stay in the core's
#: cache. Whole-image 1x1 convolutions run from main memory at 40 % of the matrix product rate
#: measured on cache-sized operands.
CPU_BAND_PIXELS = 4096

#: Same, for accelerators when the attention is not fused (the math fallback): bounds memory.
DEVICE_BUDGET_MB = 512.0

_LOW_PRECISION = (torch.float16, torch.bfloat16)

_CHUNK: ContextVar[int | None] = ContextVar("stereosr_attention_chunk", default=None)


def check_rows(name: str, value: object, minimum: int, allow_none: bool) -> None:
    """Raise :class:`~stereosr.errors.InputError` naming ``name`` unless ``value`` is a whole
    number >= ``minimum`` (or None when ``allow_none``). Bools, floats and strings are refused
    rather than truncated, compared or failing later inside a forward pass."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "None or " if allow_none else ""
        raise InputError(f"{name}={value!r} is not valid; pass {what}a whole number of rows "
                         f">= {minimum}")


@contextlib.contextmanager
def attention_chunk(rows: int | None) -> Iterator[None]:
    """Within the context, compute SCAM attention ``rows`` feature rows at a time (exact for
    any value; ``None`` leaves the model's own choice). Nothing is stored on any model, so
    concurrent callers do not interfere."""
    check_rows("attention_chunk", rows, 1, allow_none=True)
    token = _CHUNK.set(None if rows is None else int(rows))
    try:
        yield
    finally:
        _CHUNK.reset(token)


def check_budget(megabytes: object) -> None:
    """Raise :class:`~stereosr.errors.InputError` unless ``megabytes`` is None or a finite
    number > 0."""
    if megabytes is None:
        return
    if isinstance(megabytes, bool) or not isinstance(megabytes, numbers.Real) \
            or not math.isfinite(megabytes) or megabytes <= 0:
        raise InputError(f"megabytes={megabytes!r} is not a valid attention budget; pass None "
                         "or a finite number of MiB > 0")


def chunk_override() -> int | None:
    """Rows per chunk set by an enclosing :func:`attention_chunk`, else ``None``."""
    return _CHUNK.get()


def attention_backend(device: torch.device, dtype: torch.dtype, exporting: bool = False,
                      compiling: bool = False) -> str:
    """How SCAM computes attention for query tensors of ``dtype`` on ``device`` (see module
    docstring): ``"explicit"`` while exporting, ``"sdpa"`` under ``torch.compile``, off the CPU
    or in half precision, else ``"shared"``."""
    if exporting:
        return "explicit"
    if compiling or device.type != "cpu" or dtype in _LOW_PRECISION:
        return "sdpa"
    return "shared"


def _fused(device: torch.device, dtype: torch.dtype, channels: int) -> bool:
    """Whether SDPA on ``device`` runs a kernel that never holds W x W (CUDA flash or
    memory-efficient: float16/bfloat16/float32, head size a multiple of 8 up to 256)."""
    return (device.type == "cuda" and dtype in (torch.float16, torch.bfloat16, torch.float32)
            and channels % 8 == 0 and channels <= 256)


def attention_rows(rows: int, w: int, channels: int, device: torch.device, dtype: torch.dtype,
                   fixed: int | None = None, budget_mb: float | None = None) -> int:
    """Rows of attention per chunk for ``rows`` rows of width ``w``.

    ``fixed``: rows set on the module (``chunk_rows``); ``budget_mb``: per-chunk memory of the
    W x W matrices when chunking is automatic (default: cache-sized on the CPU, a bound on
    accelerators). Always between 1 and ``rows``.
    """
    override = chunk_override()
    if override is not None:
        return max(1, min(rows, override))
    if fixed:
        return max(1, min(rows, int(fixed)))
    if _fused(device, dtype, channels):
        return max(1, rows)
    if budget_mb is None:
        budget_mb = CPU_CACHE_BUDGET_MB if device.type == "cpu" else DEVICE_BUDGET_MB
    per_row = w * w * max(torch.finfo(dtype).bits // 8, 4)
    return max(1, min(rows, int(budget_mb * 2**20) // per_row))


def band_rows(images: int, w: int) -> int:
    """Rows of (``images``, H, ``w``, C) features one band holds when a block runs band by
    band on the CPU: about :data:`CPU_BAND_PIXELS` pixels, at least one row."""
    return max(1, CPU_BAND_PIXELS // max(1, images * w))


def inference_peak_bytes(h: int, w: int, width: int, scale: int, *, batch: int = 1,
                         dtype: torch.dtype = torch.float32,
                         compute_dtype: torch.dtype | None = None,
                         device: torch.device | str = "cpu",
                         attention: int | None = None) -> int:
    """Estimated peak memory (bytes) of one NAFSSR inference on ``batch`` (h, w) LR pairs.

    Counts, for both views: the feature buffer (``dtype``), the live block temporaries (about
    five maps of ``width`` channels in ``compute_dtype``, the autocast dtype when mixed
    precision is used), the attention of one chunk (``attention`` rows of W x W, three
    live matrices; ``None``: the rows the policy would pick; fused SDPA keeps none), the
    input, and the output plus its bilinear base in ``dtype``. An upper-bound style estimate
    for planning tiles; it ignores allocator fragmentation and library workspaces.

    Raises :class:`~stereosr.errors.InputError` for an ``h``/``w`` that is not a whole number
    >= 0, a ``batch`` that is not one >= 1, a non-float ``dtype``/``compute_dtype`` or an
    unknown ``device``.
    """
    for name, value, least in (("h", h, 0), ("w", w, 0), ("batch", batch, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InputError(f"{name}={value!r} is not valid; pass a whole number >= {least}")
    for name, dt in (("dtype", dtype), ("compute_dtype", compute_dtype)):
        if dt is not None and not (isinstance(dt, torch.dtype) and dt.is_floating_point):
            raise InputError(f"{name}={dt!r} is not valid; pass a floating torch.dtype such as "
                             "torch.float32 or torch.float16")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device={device!r} is not a torch device; pass e.g. 'cpu' or "
                         "'cuda'") from None
    cdt = compute_dtype or dtype
    item = torch.finfo(dtype).bits // 8
    citem = torch.finfo(cdt).bits // 8
    px = 2 * batch * h * w  # both views
    feats = px * width * (item + 5 * citem)
    rows = batch * h
    if attention is None:
        if _fused(dev, cdt, width):
            chunk = 0
        else:
            chunk = attention_rows(rows, w, width, dev, cdt) if rows else 0
    else:
        chunk = min(rows, attention)
    attn = chunk * w * w * max(citem, 4) * 3
    io = px * 3 * item + 2 * px * 3 * scale * scale * item
    return int(feats + attn + io)
