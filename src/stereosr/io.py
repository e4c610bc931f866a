"""Reading and writing images of stereo pairs.

- 8- and 16-bit PNG/JPEG/TIFF/... through Pillow, EXIF orientation applied.
- Arrays are (H, W, C) with C = 1 (grey), 3 (RGB) or 4 (RGBA), dtype uint8 or uint16.
- Writes are atomic: a temporary file in the target folder, then ``os.replace``; an interrupted
  run never leaves a half-written image, and existing files are kept unless ``overwrite``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

__all__ = [
    "atomic_write_bytes",
    "check_writable_dir",
    "from_float",
    "read_image",
    "temp_file_beside",
    "to_float",
    "write_image",
]

Image.MAX_IMAGE_PIXELS = 400_000_000  # large stereo panoramas are legitimate inputs


def _pil_to_array(img: Image.Image, path: Path) -> np.ndarray:
    mode = img.mode
    arr: np.ndarray
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16)[..., None]
    elif mode == "I":
        a = np.asarray(img)
        if a.min() < 0 or a.max() > 65535:
            raise InputError(f"{path}: 32-bit integer image values out of 16-bit range")
        arr = a.astype(np.uint16)[..., None]
    elif mode == "L":
        arr = np.asarray(img, dtype=np.uint8)[..., None]
    elif mode == "LA":
        arr = np.asarray(img.convert("RGBA"), dtype=np.uint8)
        arr = np.concatenate([arr[..., :1], arr[..., 3:]], axis=-1)
    elif mode == "RGB" or mode == "RGBA":
        arr = np.asarray(img, dtype=np.uint8)
    elif mode in ("1", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"):
        target = "RGBA" if ("A" in mode or "a" in mode or "transparency" in img.info) else "RGB"
        if mode == "1":
            target = "L"
        return _pil_to_array(img.convert(target), path)
    elif mode == "F":
        raise InputError(f"{path}: floating-point images are not supported; save as 8/16-bit")
    else:
        raise InputError(f"{path}: unsupported image mode {mode!r}")
    return np.ascontiguousarray(arr)


def _png_declares_zero_size(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(24)
    return (len(head) == 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
            and (head[16:20] == b"\0\0\0\0" or head[20:24] == b"\0\0\0\0"))


def _png16_info(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) when ``path`` is a 16-bit colour PNG, else ``None``."""
    with open(path, "rb") as fh:
        head = fh.read(33)
    if len(head) < 33 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    depth, ctype = head[24], head[25]
    return (depth, ctype) if depth == 16 and ctype in (2, 6) else None


def _paeth_row(cur: np.ndarray, prev: np.ndarray, bpp: int) -> None:
    a = np.zeros(bpp, dtype=np.int32)
    c = np.zeros(bpp, dtype=np.int32)
    for i in range(0, cur.size, bpp):
        b = prev[i:i + bpp].astype(np.int32)
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        cur[i:i + bpp] = (cur[i:i + bpp] + pred) & 0xFF
        a, c = cur[i:i + bpp].astype(np.int32), b


def _decode_png16(path: Path) -> np.ndarray:
    """Decode a non-interlaced 16-bit RGB/RGBA PNG (Pillow reduces those to 8 bits)."""
    import struct
    import zlib

    data = path.read_bytes()
    pos, idat, hdr = 8, [], b""
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag = data[pos + 4:pos + 8]
        payload = data[pos + 8:pos + 8 + length]
        if len(payload) < length:
            raise InputError(f"{path}: PNG file is truncated")
        if tag == b"IHDR":
            hdr = payload
        elif tag == b"IDAT":
            idat.append(payload)
        elif tag == b"IEND":
            break
        pos += 12 + length
    w, h, _, ctype, _, _, interlace = struct.unpack(">IIBBBBB", hdr)
    if interlace:
        raise InputError(f"{path}: interlaced 16-bit PNG is not supported; re-save it")
    ch = 3 if ctype == 2 else 4
    bpp, stride = 2 * ch, 2 * ch * w
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    except zlib.error:
        raise InputError(f"{path}: PNG data is corrupt or truncated") from None
    if raw.size < h * (stride + 1):
        raise InputError(f"{path}: PNG data is truncated")
    rows = raw[: h * (stride + 1)].reshape(h, stride + 1)
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(h):
        f, cur = rows[y, 0], rows[y, 1:].copy()
        if f == 1:
            cur = (np.cumsum(cur.reshape(w, bpp).astype(np.int64), axis=0) & 0xFF)
            cur = cur.astype(np.uint8).reshape(-1)
        elif f == 2:
            cur = cur + prev
        elif f == 3:
            for i in range(stride):
                left = int(cur[i - bpp]) if i >= bpp else 0
                cur[i] = (int(cur[i]) + ((left + int(prev[i])) >> 1)) & 0xFF
        elif f == 4:
            _paeth_row(cur, prev, bpp)
        elif f != 0:
            raise InputError(f"{path}: PNG data is corrupt (filter {f})")
        out[y] = cur
        prev = cur
    return out.view(">u2").reshape(h, w, ch).astype(np.uint16)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as (H, W, C) uint8/uint16, C in {1, 3, 4}, EXIF orientation applied.

    Raises :class:`InputError` with a one-line reason for missing, non-image, corrupt,
    truncated or empty files.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected an image file")
    try:
        if _png16_info(p) is not None:
            arr = _decode_png16(p)
            if arr.shape[0] == 0 or arr.shape[1] == 0:
                raise InputError(f"{p}: image has zero size")
            return arr
        with Image.open(p) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
            arr = _pil_to_array(img, p)
    except UnidentifiedImageError:
        if _png_declares_zero_size(p):
            raise InputError(f"{p}: image has zero size (0 pixels wide or high)") from None
        raise InputError(f"{p}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{p}: cannot read image ({exc}); the file may be corrupt or "
                         "truncated") from None
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{p}: image has zero size {arr.shape[1]}x{arr.shape[0]}")
    return arr


def to_float(arr: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 in [0, 1]; float arrays are returned as float32 unchanged."""
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


def check_writable_dir(path: str | os.PathLike[str], create: bool = True) -> Path:
    """Make sure ``path`` is (or can be made) a writable folder; raise InputError if not."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{p}: exists and is not a folder; choose another output folder")
    if not p.exists():
        if not create:
            raise InputError(f"{p}: folder does not exist")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{p}: cannot create output folder ({exc.strerror})") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise InputError(f"{p}: output folder is not writable; choose another with -o")
    return p


def temp_file_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """Open a temporary file in ``path``'s folder for an atomic replace of ``path``.

    Unlike a bare ``mkstemp`` (mode 0600), the file gets the permissions a normal ``open``
    would give it under the current umask, so finished outputs are readable as usual.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)
    return fd, tmp


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise InputError(f"{p}: already exists; pass --overwrite to replace it")
    fd, tmp = temp_file_beside(p)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    """(H, W[, C]) uint8 (C = 1..4) or uint16 (C = 1) -> a PIL image of the matching mode."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype == np.uint16 and arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(arr.astype("<u2")))
    if arr.dtype == np.uint16:
        raise InputError("16-bit colour images are written as PNG with write_image")
    if arr.dtype != np.uint8:
        raise InputError(f"cannot encode dtype {arr.dtype}; convert to uint8 or uint16")
    if arr.ndim == 3 and arr.shape[2] not in (2, 3, 4):
        raise InputError(f"cannot write an image with {arr.shape[2]} channels")
    return Image.fromarray(np.ascontiguousarray(arr))


def _encode_png16(arr: np.ndarray) -> bytes:
    """Encode (H, W, 3|4) uint16 as a 16-bit PNG (Pillow cannot write 16-bit colour)."""
    import struct
    import zlib

    h, w, c = arr.shape
    color_type = {3: 2, 4: 6}[c]
    raw = arr.astype(">u2").reshape(h, w * c)
    rows = np.concatenate([np.zeros((h, 1), dtype=np.uint8),
                           raw.view(np.uint8).reshape(h, w * c * 2)], axis=1)

    def chunk(tag: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(tag + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


def encode_image(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encode an (H, W, C) uint8/uint16 array; 16-bit colour is written as 16-bit PNG."""
    import io as _io

    if arr.ndim == 3 and arr.dtype == np.uint16 and arr.shape[2] in (3, 4):
        if fmt.upper() != "PNG":
            raise InputError("16-bit colour output is only supported as PNG")
        return _encode_png16(arr)
    if arr.ndim == 3 and arr.dtype == np.uint16 and arr.shape[2] == 2:
        return _encode_png16(np.concatenate([arr[..., :1]] * 3 + [arr[..., 1:]], axis=-1))
    buf = _io.BytesIO()
    _array_to_pil(arr).save(buf, format=fmt)
    return buf.getvalue()


def write_image(path: str | os.PathLike[str], arr: np.ndarray, overwrite: bool = False) -> None:
    """Atomically write (H, W[, C]) uint8/uint16 ``arr``; the format follows the suffix."""
    p = Path(path)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
           ".bmp": "BMP", ".webp": "WEBP"}.get(p.suffix.lower())
    if fmt is None:
        raise InputError(f"{p}: unknown image extension {p.suffix!r}; use .png")
    atomic_write_bytes(p, encode_image(arr, fmt), overwrite=overwrite)
