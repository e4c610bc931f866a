"""Small operations on image arrays, kept in one place: conversions, checks, modcrop.

Arrays are (H, W) or (H, W, C) with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); dtype
uint8, uint16, or float on the [0, 1] scale. PIL images convert to and from such arrays.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import InputError

__all__ = [
    "apply_orientation",
    "array_to_pil",
    "as_rgb",
    "as_rgb8",
    "check_view",
    "from_float",
    "modcrop",
    "pil_to_array",
    "to_float",
]


def to_float(arr: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 in [0, 1]; float arrays are returned as float32 unchanged.

    Raises :class:`InputError` for other dtypes.
    """
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32, copy=False)
    raise InputError(f"unsupported array dtype {arr.dtype}; use uint8, uint16 or float")


def from_float(arr: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """float in [0, 1] -> ``dtype`` (uint8/uint16 rounded and clipped; float clipped to [0,1])."""
    dt = np.dtype(dtype)
    if dt == np.uint8:
        return np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    if dt == np.uint16:
        return np.clip(np.round(arr * 65535.0), 0, 65535).astype(np.uint16)
    if np.issubdtype(dt, np.floating):
        return np.clip(arr, 0.0, 1.0).astype(dt)
    raise InputError(f"unsupported output dtype {dt}")


def as_rgb(arr: np.ndarray) -> np.ndarray:
    """(H, W[, C]) image with C in {1, 2, 3, 4} -> (H, W, 3), same dtype.

    Grey is repeated over three channels; an alpha channel is dropped.
    """
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"expected an (H, W, C) image with 1-4 channels, got shape {arr.shape}")
    c = arr.shape[2]
    if c in (1, 2):
        return np.repeat(arr[..., :1], 3, axis=2)
    return arr[..., :3] if c == 4 else arr


def as_rgb8(img: np.ndarray, name: str = "image") -> np.ndarray:
    """(H, W[, C]) uint8/uint16 image as (H, W, 3) uint8 RGB.

    Grey is repeated to RGB, an alpha channel dropped, 16 bits reduced with ``round(x / 257)``.
    """
    a = img[..., None] if img.ndim == 2 else img
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"{name}: expected an (H, W[, C]) image, got shape {img.shape}")
    if a.dtype == np.uint16:
        a = np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise InputError(f"{name}: expected an 8- or 16-bit image, got dtype {a.dtype}")
    return np.ascontiguousarray(as_rgb(a))


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Drop bottom rows and right columns of (H, W, ...) ``img`` so H and W are multiples of
    ``scale`` (the "modcrop" of the SR test protocols). Returns a view.

    Raises :class:`InputError` when ``scale < 1`` or the image is smaller than ``scale``.
    """
    if scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale}")
    h, w = img.shape[:2]
    if h < scale or w < scale:
        raise InputError(f"image of {w}x{h} pixels is smaller than the scale {scale}")
    return img[:h - h % scale, :w - w % scale]


def check_view(img: np.ndarray, which: str) -> np.ndarray:
    """Check a view given as an array: (H, W) or (H, W, C), C in 1..4, non-empty, finite.

    Returns (H, W, C) (a view of ``img``). Raises :class:`InputError` naming ``which``.
    """
    if not isinstance(img, np.ndarray):
        raise InputError(f"{which} view must be a numpy array or a PIL image, got "
                         f"{type(img).__name__}")
    arr = img[..., None] if img.ndim == 2 else img
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"{which} view must be (H, W), (H, W, 1|2|3|4), got shape {img.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{which} view has zero size {img.shape}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError(f"{which} view contains NaN or infinite values")
    return arr


def pil_to_array(img: Image.Image, name: str = "image") -> np.ndarray:
    """PIL image -> (H, W, C) uint8/uint16 array, C in {1, 2, 3, 4}.

    16-bit grey modes stay 16-bit; palette, bilevel, CMYK, YCbCr, LAB and HSV images become
    8-bit grey/RGB/RGBA (RGBA when they carry transparency). Raises :class:`InputError` for
    floating-point images and 32-bit integers outside the 16-bit range.
    """
    mode = img.mode
    arr: np.ndarray
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16)[..., None]
    elif mode == "I":
        a = np.asarray(img)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise InputError(f"{name}: 32-bit integer image values are outside the 16-bit "
                             "range; save it as an 8- or 16-bit image")
        arr = a.astype(np.uint16)[..., None]
    elif mode == "L":
        arr = np.asarray(img, dtype=np.uint8)[..., None]
    elif mode == "LA" or mode in ("RGB", "RGBA"):
        arr = np.asarray(img, dtype=np.uint8)
    elif mode in ("1", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"):
        target = "RGBA" if ("A" in mode or "a" in mode or "transparency" in img.info) else "RGB"
        if mode == "1":
            target = "L"
        return pil_to_array(img.convert(target), name)
    elif mode == "F":
        raise InputError(f"{name}: floating-point images are not supported; save it as an 8- or "
                         "16-bit image")
    else:
        raise InputError(f"{name}: unsupported image mode {mode!r}; save it as an 8- or 16-bit "
                         "grey, RGB or RGBA image")
    return np.ascontiguousarray(arr)


def array_to_pil(arr: np.ndarray) -> Image.Image:
    """(H, W[, C]) uint8 (C = 1..4) or uint16 (C = 1) -> a PIL image of the matching mode.

    Pillow has no 16-bit colour modes: 16-bit images with 2-4 channels raise
    :class:`InputError` (use arrays, or :func:`stereosr.io.write_image`, for those).
    """
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype == np.uint16 and arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(arr.astype("<u2")))
    if arr.dtype == np.uint16:
        raise InputError("PIL images cannot hold 16-bit colour; use numpy arrays (or write the "
                         "image with stereosr.io.write_image)")
    if arr.dtype != np.uint8:
        raise InputError(f"cannot make a PIL image of dtype {arr.dtype}; convert to uint8")
    if arr.ndim == 3 and arr.shape[2] not in (2, 3, 4):
        raise InputError(f"cannot make a PIL image with {arr.shape[2]} channels")
    return Image.fromarray(np.ascontiguousarray(arr))


def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn (H, W, ...) ``arr`` as the EXIF/TIFF Orientation tag (274) ``orientation`` says
    it is to be displayed (1: as stored, 2-8: mirrored and/or rotated). Returns a view.

    Values outside 1..8 are treated as 1, as image viewers do.
    """
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(arr, k=-1)
    if orientation == 7:
        return arr[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(arr, k=1)
    return arr
