"""The upscale pipeline: arrays/images in, upscaled arrays/images of the same kind out."""

from __future__ import annotations

import functools
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..errors import InputError
from ..imageops import array_to_pil, check_view, from_float, pil_to_array, to_float
from .ensemble import self_ensemble as _self_ensemble
from .tiling import auto_tile_rows, available_memory_bytes, tiled_forward

__all__ = ["StereoModel", "default_model", "upscale", "upscale_tensors"]

class StereoModel(Protocol):
    """Anything called as ``model(left, right) -> (sr_left, sr_right)`` with a ``scale``."""

    @property
    def scale(self) -> int: ...

    def __call__(self, left: Tensor, right: Tensor) -> tuple[Tensor, Tensor]: ...


@functools.lru_cache(maxsize=4)
def _cached_default(device: str) -> Any:
    from ..models.checkpoint import load_model
    from ..models.registry import DEFAULT_MODEL

    return load_model(DEFAULT_MODEL, device=device)


def default_model(device: str | torch.device | None = None) -> Any:
    """The packaged default model (loaded once per device)."""
    from ..runtime import resolve_device

    return _cached_default(str(resolve_device(device)))


def _model_device(model: Any) -> torch.device:
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


def _model_width(model: Any) -> int:
    cfg = getattr(model, "config", None)
    return int(getattr(cfg, "width", 64))


def upscale_tensors(model: Any, left: Tensor, right: Tensor, *, tile: int | None = None,
                    overlap: int = 24, self_ensemble: bool = False,
                    rgb_permutations: bool = False, attention_chunk: int | None = None,
                    auto_tile: bool = True) -> tuple[Tensor, Tensor]:
    """Upscale (B, 3, h, w) float views in [0, 1] with ``model``; returns (B, 3, s*h, s*w).

    ``tile``: LR rows per band for row tiling (None: automatic when the estimated memory
    exceeds what the device has free, if ``auto_tile``). ``overlap``: LR rows of context added on
    each side of a band. ``self_ensemble``: average over the 4 epipolar-preserving flips (24 with
    ``rgb_permutations``). ``attention_chunk``: rows of cross-attention computed at a time.
    """
    if left.shape != right.shape:
        raise InputError(f"left and right views differ in size: {tuple(left.shape)} vs "
                         f"{tuple(right.shape)}; both views must have the same size")
    scale = int(model.scale)
    device = _model_device(model)
    left, right = left.to(device), right.to(device)
    h, w = left.shape[-2:]
    set_chunk = getattr(model, "set_attention_chunk", None)
    if tile is None and auto_tile:
        budget = available_memory_bytes(device)
        tile = auto_tile_rows(h, w, _model_width(model), scale, budget, overlap,
                              attention_rows=attention_chunk)
    if callable(set_chunk):
        if attention_chunk is None:
            # Keep one chunk of row attention under ~256 MB (3 live W x W maps per row).
            attention_chunk = max(1, (256 << 20) // max(1, 12 * w * w))
        set_chunk(attention_chunk)

    def run(l_: Tensor, r_: Tensor) -> tuple[Tensor, Tensor]:
        if tile is not None and tile < l_.shape[-2]:
            return tiled_forward(model, l_, r_, scale, tile, overlap)
        return model(l_, r_)  # type: ignore[no-any-return]

    with torch.inference_mode():
        if self_ensemble or rgb_permutations:
            return _self_ensemble(run, left, right, rgb_permutations=rgb_permutations)
        return run(left, right)


def _as_array(img: np.ndarray | Image.Image, which: str) -> np.ndarray:
    if isinstance(img, Image.Image):
        return pil_to_array(img, which)
    return check_view(img, which)


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
            overlap: int = 24, self_ensemble: bool = False, rgb_permutations: bool = False,
            device: str | torch.device | None = None, attention_chunk: int | None = None
            ) -> tuple[Any, Any]:
    """Upscale a stereo pair of numpy arrays or PIL images with NAFSSR.

    Arrays are (H, W) or (H, W, C) with C in 1/3/4, dtype uint8, uint16 or float in [0, 1];
    the result has the same kind, channel layout and dtype, ``scale`` times larger. Greyscale is
    upscaled as RGB and averaged back; an alpha channel is upscaled with bicubic and reattached.
    ``model`` is a loaded model (see :func:`stereosr.load_model`), a checkpoint path or name, or
    None for the packaged default model.
    """
    if model is None:
        model = default_model(device)
    elif isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from ..models.checkpoint import load_model

        model = load_model(model, device=device)
    was_pil = isinstance(left, Image.Image)
    if was_pil != isinstance(right, Image.Image):
        raise InputError("left and right must both be PIL images or both numpy arrays")
    a_l, a_r = _as_array(left, "left"), _as_array(right, "right")
    if a_l.shape != a_r.shape:
        raise InputError(f"left and right views differ: {a_l.shape[1]}x{a_l.shape[0]}x"
                         f"{a_l.shape[2]} vs {a_r.shape[1]}x{a_r.shape[0]}x{a_r.shape[2]}; "
                         "a stereo pair needs two views of the same size and channels")
    if a_l.dtype != a_r.dtype:
        raise InputError(f"left and right views have different dtypes ({a_l.dtype} vs "
                         f"{a_r.dtype})")
    dtype = a_l.dtype
    f_l, f_r = to_float(a_l), to_float(a_r)
    rgb_l, alpha_l = _split_alpha(f_l)
    rgb_r, alpha_r = _split_alpha(f_r)

    def to_t(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]

    sr_l, sr_r = upscale_tensors(model, to_t(rgb_l), to_t(rgb_r), tile=tile, overlap=overlap,
                                 self_ensemble=self_ensemble, rgb_permutations=rgb_permutations,
                                 attention_chunk=attention_chunk)
    scale = int(model.scale)
    outs = []
    for sr, alpha, src in ((sr_l, alpha_l, a_l), (sr_r, alpha_r, a_r)):
        o = sr[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        c = src.shape[2]
        if c in (1, 2):
            o = o.mean(axis=2, keepdims=True)
        if alpha is not None:
            o = np.concatenate([o, _upscale_alpha(alpha, scale)[..., None]], axis=2)
        o = from_float(o, dtype)
        if (isinstance(left, np.ndarray) and left.ndim == 2) or (was_pil and c == 1):
            o = o[..., 0]
        outs.append(o)
    if was_pil:
        return array_to_pil(outs[0]), array_to_pil(outs[1])
    return outs[0], outs[1]
