"""The upscale pipeline: arrays/images in, upscaled arrays/images of the same kind out."""

from __future__ import annotations

import contextlib
import copy
import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..errors import CheckpointError, InputError
from ..imageops import array_to_pil, check_view, from_float, pil_to_array, to_float
from ..models import memory
from ..models.memory import inference_peak_bytes
from .ensemble import self_ensemble as _self_ensemble
from .precision import precision_context, resolve_precision
from .tiling import StereoFn, auto_tile_rows, available_memory_bytes, default_overlap, tiled_forward

__all__ = ["default_model", "upscale", "upscale_tensors"]


@functools.lru_cache(maxsize=4)
def _cached_default(device: str) -> Any:
    from ..models.checkpoint import load_model
    from ..models.registry import DEFAULT_MODEL

    return load_model(DEFAULT_MODEL, device=device)


def default_model(device: str | torch.device | None = None) -> Any:
    """The packaged default model (loaded once per device)."""
    from ..runtime import resolve_device

    return _cached_default(str(resolve_device(device)))


def _model_param(model: Any) -> Tensor | None:
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p  # type: ignore[no-any-return]
    return None


def _estimator(model: Any, w: int, batch: int, precision: str, device: torch.device
               ) -> Callable[[int], int]:
    """Peak memory (bytes) of a band of ``rows`` LR rows: the model's own estimate when it
    has one, else the NAFSSR formula with all attention rows at once (e.g. an ONNX graph)."""
    compute = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    estimate = getattr(model, "estimate_memory", None)
    if callable(estimate):
        return lambda rows: int(estimate(rows, w, batch=batch, compute_dtype=compute))
    cfg = getattr(model, "config", None)
    width = int(getattr(cfg, "width", None) or 64)
    scale = int(model.scale)
    return lambda rows: inference_peak_bytes(rows, w, width, scale, batch=batch,
                                             compute_dtype=compute, device=device,
                                             attention=batch * rows)


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Run ``model`` in eval mode (no stochastic depth, TLC on) and give every submodule its
    own training flag back afterwards, also after an exception."""
    modules = list(model.modules()) if isinstance(model, torch.nn.Module) else []
    flags = [m.training for m in modules]
    if not any(flags):
        yield
        return
    model.eval()
    try:
        yield
    finally:
        for m, flag in zip(modules, flags):
            m.training = flag


def _check_model(model: Any) -> None:
    if not callable(model) or not isinstance(getattr(model, "scale", None), (int, np.integer)):
        raise InputError(f"model={type(model).__name__!s} object is not a stereo SR model; pass "
                         "a loaded model (stereosr.load_model), a checkpoint path or registered "
                         "name, or None for the packaged default model")


def _check_device(model: Any, device: str | torch.device | None) -> None:
    """A ``device`` given with a loaded model must be where the model is: the model is never
    moved (that would change the caller's model), and ignoring ``device`` would be silent."""
    from ..runtime import resolve_device

    if device is None or str(device) == "auto":
        return
    want = resolve_device(device)
    param = _model_param(model)
    if param is None:
        return
    have = param.device
    if have.type != want.type or (torch.device(device).index is not None
                                  and have.index != want.index):
        raise InputError(f"device={str(device)!r} does not match the model, whose weights are on "
                         f"{have}; move it first (model.to({str(device)!r})) or leave "
                         "device=None")


def _finite(outs: tuple[Tensor, ...]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in outs)


def upscale_tensors(model: Any, left: Tensor, right: Tensor, *, tile: int | None = None,
                    overlap: int | None = None, self_ensemble: bool = False,
                    rgb_permutations: bool = False, attention_chunk: int | None = None,
                    auto_tile: bool = True, precision: str | None = None
                    ) -> tuple[Tensor, Tensor]:
    """Upscale (B, 3, h, w) float views in [0, 1] with ``model``; returns (B, 3, s*h, s*w)
    on the model's device, in the dtype of ``left``.

    The inputs are moved to the model's device and dtype (a ``model.half()`` works as is).
    ``tile``: LR rows per band for row tiling (None: automatic when the model's memory estimate
    exceeds what the device has free, if ``auto_tile``; on CUDA from
    ``torch.cuda.mem_get_info``). ``overlap``: LR rows of context added on each side of a band
    (None: :func:`~stereosr.infer.tiling.default_overlap`, the model's TLC window height).
    ``self_ensemble``: average over the 4 epipolar-preserving flips (24 with
    ``rgb_permutations``). ``attention_chunk``: rows of cross-attention computed at a time for
    this call (default: the model's memory policy); the model itself is never changed (a model
    in training mode runs in eval mode for the call and is handed back in training mode).
    ``precision``: 'fp32', 'tf32', 'bf16' or 'fp16' (see :mod:`stereosr.infer.precision`;
    default fp16 on CUDA, fp32 elsewhere). A half-precision result that is not finite is
    redone in fp32, with a warning.
    Raises :class:`~stereosr.errors.InputError` for views that are not float (B, 3, h, w)
    tensors or differ in size, non-finite
    input values or a bad ``precision``, and :class:`~stereosr.errors.CheckpointError` when
    the model's output is not finite for finite input (weights that overflow), and
    :class:`~stereosr.errors.InputError` for a ``tile``, ``overlap`` or ``attention_chunk``
    that is not a whole number of rows (``tile`` and ``attention_chunk`` >= 1, ``overlap`` >= 0).
    """
    for which, t in (("left", left), ("right", right)):
        if not isinstance(t, Tensor) or t.ndim != 4 or t.shape[1] != 3 \
                or not t.is_floating_point():
            got = (f"{tuple(t.shape)} {t.dtype}" if isinstance(t, Tensor)
                   else type(t).__name__)
            raise InputError(f"{which} view must be a float (B, 3, h, w) tensor in [0, 1], got "
                             f"{got}; use upscale() for arrays, images and integer pixels")
    _check_model(model)
    memory.check_rows("tile", tile, 1, allow_none=True)
    memory.check_rows("overlap", overlap, 0, allow_none=True)
    if overlap is None:
        overlap = default_overlap(model)
    memory.check_rows("attention_chunk", attention_chunk, 1, allow_none=True)
    if left.shape != right.shape:
        raise InputError(f"left and right views differ in size: {tuple(left.shape)} vs "
                         f"{tuple(right.shape)}; both views must have the same size")
    scale = int(model.scale)
    param = _model_param(model)
    device = param.device if param is not None else torch.device("cpu")
    mdtype = param.dtype if param is not None else torch.float32
    prec = resolve_precision(precision, device, mdtype)
    out_dtype = left.dtype if left.is_floating_point() else torch.float32
    left, right = left.to(device, mdtype), right.to(device, mdtype)
    b, _, h, w = left.shape
    if tile is None and auto_tile:
        budget = available_memory_bytes(device)
        with memory.attention_chunk(attention_chunk):
            tile = auto_tile_rows(h, budget, overlap, _estimator(model, w, b, prec, device))

    def run(l_: Tensor, r_: Tensor) -> tuple[Tensor, Tensor]:
        if tile is not None and tile < l_.shape[-2]:
            return tiled_forward(model, l_, r_, scale, tile, overlap)
        return model(l_, r_)  # type: ignore[no-any-return]

    def compute(p: str, fn: StereoFn) -> tuple[Tensor, Tensor]:
        with torch.inference_mode(), memory.attention_chunk(attention_chunk), \
                precision_context(p, device), _eval_mode(model):
            if self_ensemble or rgb_permutations:
                return _self_ensemble(fn, left, right, rgb_permutations=rgb_permutations)
            return fn(left, right)

    out = compute(prec, run)
    if prec in ("bf16", "fp16") and not _finite(out) and _finite((left, right)):
        warnings.warn(f"{prec} inference gave non-finite values; redone in fp32",
                      RuntimeWarning, stacklevel=2)
        if mdtype != torch.float32:  # a half model: use a float32 copy of it
            full = copy.deepcopy(model).float().eval()
            left, right = left.float(), right.float()

            def run(l_: Tensor, r_: Tensor) -> tuple[Tensor, Tensor]:
                if tile is not None and tile < l_.shape[-2]:
                    return tiled_forward(full, l_, r_, scale, tile, overlap)
                return full(l_, r_)  # type: ignore[no-any-return]
        out = compute("fp32", run)
    if not _finite(out):
        # Written out, NaN becomes black and Inf white: never a silent result.
        bad = sum(int((~torch.isfinite(t)).sum()) for t in out)
        total = sum(t.numel() for t in out)
        if not _finite((left, right)):
            raise InputError("the input views hold NaN or infinite values; pass finite "
                             "values in [0, 1]")
        raise CheckpointError(
            f"the model's output holds {bad:,} NaN or infinite values (of {total:,}) for finite "
            "input: its weights overflow (values too large for the precision they run in); "
            "use another checkpoint")
    return out[0].to(out_dtype), out[1].to(out_dtype)


# Float views hold [0, 1]; a little over- or undershoot (e.g. an unclipped bicubic LR) is
# clipped in the output as usual, but values far outside mean pixels on a 0-255 or 0-65535
# scale, which would otherwise come out silently saturated.
_FLOAT_SLACK = 0.5


def _as_array(img: np.ndarray | Image.Image, which: str) -> np.ndarray:
    if isinstance(img, Image.Image):
        return pil_to_array(img, which)
    arr = check_view(img, which)
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -_FLOAT_SLACK or hi > 1 + _FLOAT_SLACK:
            raise InputError(f"{which} view is float with values in [{lo:g}, {hi:g}]; float "
                             "views must be in [0, 1]: divide 8-bit values by 255 and 16-bit "
                             "values by 65535, or pass the uint8/uint16 array itself")
    return arr


def _split_alpha(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, C) float -> RGB (H, W, 3) and alpha (H, W) or None."""
    c = arr.shape[2]
    if c == 1:
        return np.repeat(arr, 3, axis=2), None
    if c == 2:
        return np.repeat(arr[..., :1], 3, axis=2), arr[..., 1]
    if c == 3:
        return arr, None
    return arr[..., :3], arr[..., 3]


def _upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))[None, None]
    up = F.interpolate(t, scale_factor=scale, mode="bicubic", align_corners=False)
    return up[0, 0].clamp(0, 1).numpy()


def upscale(left: Any, right: Any, model: Any = None, *, tile: int | None = None,
            overlap: int | None = None, self_ensemble: bool = False, rgb_permutations: bool = False,
            device: str | torch.device | None = None, attention_chunk: int | None = None,
            precision: str | None = None) -> tuple[Any, Any]:
    """Upscale a stereo pair of numpy arrays or PIL images with NAFSSR.

    Arrays are (H, W) or (H, W, C) with C in 1/3/4, dtype uint8, uint16 or float in [0, 1]
    (float values beyond [-0.5, 1.5], i.e. on a 0-255 scale, raise InputError);
    the result has the same kind, channel layout and dtype, ``scale`` times larger. Greyscale is
    upscaled as RGB and averaged back; an alpha channel is upscaled with bicubic and reattached.
    The two views must have the same size but may differ in channels or dtype (e.g. an RGB and
    a grey view): each is handled as above and returned in its own layout and dtype.
    ``model`` is a loaded model (see :func:`stereosr.load_model`), a checkpoint path or name, or
    None for the packaged default model; it is not modified (a ``model.half()`` works, the
    inputs follow its dtype and device). ``device`` places a default or named model; with a
    loaded model it must match where the model is (InputError otherwise). ``precision``: 'fp32', 'tf32', 'bf16' or 'fp16'
    (default fp16 on CUDA, fp32 elsewhere; see :mod:`stereosr.infer.precision`). Other keywords
    as in :func:`upscale_tensors`.
    """
    if model is None:
        model = default_model(device)
    elif isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from ..models.checkpoint import load_model

        model = load_model(model, device=device)
    else:
        _check_model(model)
        _check_device(model, device)
    was_pil = isinstance(left, Image.Image)
    if was_pil != isinstance(right, Image.Image):
        raise InputError("left and right must both be PIL images or both numpy arrays")
    a_l, a_r = _as_array(left, "left"), _as_array(right, "right")
    if a_l.shape[:2] != a_r.shape[:2]:
        raise InputError(f"left and right views differ in size: {a_l.shape[1]}x{a_l.shape[0]} "
                         f"vs {a_r.shape[1]}x{a_r.shape[0]}; a stereo pair needs two views of "
                         "the same size")
    f_l, f_r = to_float(a_l), to_float(a_r)
    rgb_l, alpha_l = _split_alpha(f_l)
    rgb_r, alpha_r = _split_alpha(f_r)

    def to_t(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]

    sr_l, sr_r = upscale_tensors(model, to_t(rgb_l), to_t(rgb_r), tile=tile, overlap=overlap,
                                 self_ensemble=self_ensemble, rgb_permutations=rgb_permutations,
                                 attention_chunk=attention_chunk, precision=precision)
    scale = int(model.scale)
    outs = []
    for sr, alpha, src, view in ((sr_l, alpha_l, a_l, left), (sr_r, alpha_r, a_r, right)):
        o = sr[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        c = src.shape[2]
        if c in (1, 2):
            o = o.mean(axis=2, keepdims=True)
        if alpha is not None:
            o = np.concatenate([o, _upscale_alpha(alpha, scale)[..., None]], axis=2)
        o = from_float(o, src.dtype)
        if (isinstance(view, np.ndarray) and view.ndim == 2) or (was_pil and c == 1):
            o = o[..., 0]
        outs.append(o)
    if was_pil:
        return array_to_pil(outs[0]), array_to_pil(outs[1])
    return outs[0], outs[1]
