"""Numeric precision of inference: ``fp32``, ``tf32``, ``bf16`` or ``fp16``.

- ``fp32``: float32 everywhere (TF32 matrix products off).
- ``tf32``: float32 weights and features, matrix products and convolutions may use TF32 on
  NVIDIA GPUs (same as ``fp32`` elsewhere).
- ``bf16`` / ``fp16``: mixed precision with ``torch.autocast``: convolutions, matrix products
  and attention in the half type; the residual feature stream, LayerNorm statistics, softmax
  statistics, TLC window means and the output stay float32 (the model keeps its float32
  weights). Relative L2 to float32 is no worse than the official NAFSSR under the same
  autocast (``benchmarks/precision.py``).

Default: ``fp16`` on CUDA, ``fp32`` elsewhere. float16 over bfloat16 on CUDA because it keeps
3 more mantissa bits (about 8x smaller error against float32, same speed on tensor cores), and
the float32 residual stream and statistics leave it only the products to overflow; should an
output still be non-finite, :func:`stereosr.infer.upscale.upscale_tensors` redoes that call in
``fp32`` with a warning. On the CPU half precision is slow (few CPU half kernels), so float32
stays the default there.

A model whose weights are already half (``model.half()``) runs in its own dtype; the inputs
follow it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..errors import InputError

__all__ = ["DEFAULT_CUDA_PRECISION", "PRECISIONS", "precision_context", "resolve_precision"]

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
DEFAULT_CUDA_PRECISION = "fp16"

_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def resolve_precision(precision: str | None, device: torch.device | str,
                      model_dtype: torch.dtype = torch.float32) -> str:
    """The precision to run in: ``precision`` checked, or the default for ``device``.

    A model with half weights runs in its own dtype; asking it for another precision raises
    :class:`~stereosr.errors.InputError` (naming ``precision=``).
    """
    dev = torch.device(device)
    if precision is not None and precision not in PRECISIONS:
        raise InputError(f"precision={precision!r} is not supported; use one of "
                         f"{', '.join(PRECISIONS)}")
    if model_dtype != torch.float32:
        own = _NAMES.get(model_dtype)
        if own is None:
            raise InputError(f"models with {model_dtype} weights are not supported; convert "
                             "the model with model.float() or model.half()")
        if precision not in (None, own):
            raise InputError(f"precision={precision!r} does not apply to a model whose weights "
                             f"are {model_dtype}; leave precision=None or convert the model "
                             "with model.float()")
        return own
    if precision is None:
        return DEFAULT_CUDA_PRECISION if dev.type == "cuda" else "fp32"
    return precision


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device | str) -> Iterator[None]:
    """Run the enclosed float32-model calls in ``precision`` (see module docstring); global
    settings changed for ``tf32`` are restored on exit."""
    dev = torch.device(device)
    if precision in _HALF:
        with torch.autocast(dev.type, dtype=_HALF[precision]):
            yield
        return
    if dev.type != "cuda":
        yield
        return
    old_matmul = torch.get_float32_matmul_precision()
    old_cudnn = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old_matmul)
        torch.backends.cudnn.allow_tf32 = old_cudnn
