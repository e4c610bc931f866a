"""Reading and writing the images of stereo pairs.

Supported: PNG and TIFF with 8 or 16 bits per channel, in grey, grey + alpha, RGB and RGBA
(interlaced PNG and palette/bilevel PNG included); JPEG, BMP, WebP and the other formats
Pillow reads, at 8 bits. EXIF/TIFF orientation is applied on reading. Arrays are (H, W, C)
with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA), dtype uint8 or uint16; what is read
is written back with the same channels and bit depth.

Codecs: PNG through ``imagecodecs`` (libpng), TIFF through ``tifffile``, the rest through
Pillow. Pillow alone is not enough: it reduces 16-bit colour PNGs to 8 bits and cannot write
16-bit colour or 16-bit grey + alpha. ``benchmarks/image_codecs.py`` measures the candidates on
a 2000x1500 16-bit RGB PNG: OpenCV decodes as fast as imagecodecs, pypng 20-30 times slower.
imagecodecs also keeps grey + alpha as two channels (OpenCV reads it as four and cannot write
it), works in RGB order and is a third of OpenCV's size, so it is the PNG codec here.

Decompression bombs: the pixel count is read from the header before anything is decoded, and
images over ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`) are refused with
:class:`ImageTooLargeError`.

Writes are atomic: a temporary file in the target folder, then a rename; an interrupted run never
leaves a half-written image, and existing files are kept unless ``overwrite``.
"""

from __future__ import annotations

import contextlib
import io as _io
import logging
import numbers
import os
import re
import struct
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageReadError, ImageTooLargeError, InputError
from .files import atomic_write_bytes, check_writable_dir, temp_file_beside
from .imageops import apply_orientation, array_to_pil, pil_to_array

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "atomic_write_bytes",
    "check_writable_dir",
    "encode_image",
    "image_size",
    "pixel_limit",
    "read_image",
    "temp_file_beside",
    "write_image",
]

#: Largest image (width x height) :func:`read_image` decodes unless told otherwise: 150
#: megapixels, e.g. 15000 x 10000. A 16-bit RGBA image of that size takes 1.2 GB decoded.
DEFAULT_MAX_PIXELS = 150_000_000

_max_pixels: int | None = DEFAULT_MAX_PIXELS


@contextlib.contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Within the ``with`` block, :func:`read_image` calls that do not pass ``max_pixels``
    (including those inside data-set readers and evaluation) use ``max_pixels`` (``None``: no
    limit). Meant for a whole run, e.g. the command line's ``--max-pixels``."""
    global _max_pixels
    saved, _max_pixels = _max_pixels, _checked_limit(max_pixels)
    try:
        yield
    finally:
        _max_pixels = saved


def _checked_limit(max_pixels: object) -> int | None:
    """The pixel limit ``max_pixels`` (``"default"``: the current one), checked: ``None`` or a
    positive integer; :class:`InputError` otherwise."""
    if max_pixels == "default":
        return _max_pixels
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Integral) \
            or max_pixels < 1:
        raise InputError(f"max_pixels must be a positive whole number of pixels or None, got "
                         f"{max_pixels!r}")
    return int(max_pixels)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
_ORIENTATION = 0x0112


class _LibpngNotice(logging.Filter):
    """Drop libpng's notices about interlace handling and eXIf chunks: imagecodecs decodes
    interlaced PNGs exactly (the tests compare them with an independent decoder), and the eXIf
    chunk is read here, not by libpng (which calls one that starts with "Exif\\0\\0", as some
    writers make it, invalid); the notices are noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return "Interlace handling" not in msg and "eXIf" not in msg


logging.getLogger("imagecodecs").addFilter(_LibpngNotice())


class _OrientationValueNotice(logging.Filter):
    """Drop tifffile's log line about an Orientation tag outside 1..8: the raw value is read
    and treated as 1, as viewers do (:func:`~stereosr.imageops.apply_orientation`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not re.search(r"TiffTag 274\b.*not a valid ORIENTATION", record.getMessage())


logging.getLogger("tifffile").addFilter(_OrientationValueNotice())


def _check_pixels(p: Path, width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{p}: image has zero size {width}x{height}")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{p}: image declares {width}x{height} = {width * height:,} pixels, over the limit "
            f"of {max_pixels:,} (a guard against decompression bombs); pass a larger "
            "max_pixels to read it")


def _png_chunks(fh: _io.BufferedReader) -> list[tuple[bytes, int, int]]:
    """(type, data offset, length) of each chunk of the PNG open in ``fh``, read from the
    8-byte chunk headers only (the data is skipped, nothing is decompressed). Used for the
    header fields and the eXIf chunk, which may follow the image data; Pillow would decode the
    whole image to look for it."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    pos, out = 8, []
    while pos + 8 <= size:
        fh.seek(pos)
        length, ctype = struct.unpack(">I4s", fh.read(8))
        out.append((ctype, pos + 8, length))
        if ctype == b"IEND":
            break
        pos += 12 + length
    return out


def _png_header(p: Path, fh: _io.BufferedReader) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) of the PNG open in ``fh``."""
    chunks = _png_chunks(fh)
    if not chunks or chunks[0][0] != b"IHDR" or chunks[0][2] != 13:
        raise ImageReadError(f"{p}: not an image file (a PNG signature without a valid "
                             "header; the file is corrupt)")
    fh.seek(chunks[0][1])
    ihdr = fh.read(13)
    if len(ihdr) < 13:
        raise ImageReadError(f"{p}: PNG header cut short ({len(ihdr)} of 13 bytes); the file "
                             "is truncated")
    width, height = struct.unpack(">II", ihdr[:8])
    exif = next(((off, n) for t, off, n in chunks if t == b"eXIf"), None)
    orientation = 1
    if exif is not None:
        fh.seek(exif[0])
        tags = Image.Exif()
        try:
            with warnings.catch_warnings():  # Pillow warns "Corrupt EXIF data" on stderr
                warnings.simplefilter("ignore")
                tags.load(fh.read(exif[1]))
                orientation = int(tags.get(_ORIENTATION, 1))
        except Exception:  # noqa: BLE001  (a damaged eXIf chunk: viewers show the image as stored)
            orientation = 1
    return width, height, orientation


def _read_png(p: Path, max_pixels: int | None) -> np.ndarray:
    import imagecodecs

    with open(p, "rb") as fh:
        width, height, orientation = _png_header(p, fh)
        _check_pixels(p, width, height, max_pixels)
        data = (fh.seek(0), fh.read())[1]
    try:
        arr = imagecodecs.png_decode(data)
    except Exception as exc:  # noqa: BLE001  (libpng: bad CRC, truncated stream, bad filter)
        raise ImageReadError(f"{p}: cannot decode PNG ({exc}); the file may be corrupt or "
                             "truncated") from None
    arr = arr[..., None] if arr.ndim == 2 else arr
    return np.ascontiguousarray(apply_orientation(arr, orientation))


def _tiff_as_yxs(page: object, arr: np.ndarray) -> np.ndarray:
    axes = getattr(page, "axes", "")
    if axes.startswith("S"):
        arr = np.moveaxis(arr, 0, -1)
    return arr[..., None] if arr.ndim == 2 else arr


def _read_tiff(p: Path, max_pixels: int | None) -> np.ndarray:
    """Decode with tifffile when the first page is uint8/uint16 grey/RGB (+ alpha); other
    unsigned kinds go to Pillow, which converts them better (palette, bilevel, CMYK, YCbCr,
    min-is-white); float, signed and wider-than-16-bit samples are refused."""
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            page = tif.pages[0]
            _check_pixels(p, int(page.imagewidth), int(page.imagelength), max_pixels)
            tag = page.tags.get(_ORIENTATION)
            orientation = int(tag.value) if tag is not None else 1
            photometric = int(page.photometric)
            spp, dtype = int(page.samplesperpixel), np.dtype(page.dtype)
            if np.issubdtype(dtype, np.floating):
                raise ImageReadError(f"{p}: floating-point images are not supported; save it "
                                     "as an 8- or 16-bit image")
            if dtype.kind == "i" or (dtype.kind == "u" and dtype.itemsize > 2):
                # signed samples would wrap (-3 -> 253) and 32-bit ones have no agreed scale
                kind = "signed" if dtype.kind == "i" else "unsigned"
                raise ImageReadError(
                    f"{p}: {kind} {8 * dtype.itemsize}-bit integer samples are not supported; "
                    "save it as an unsigned 8- or 16-bit image")
            if dtype not in (np.uint8, np.uint16) or not (
                    (photometric == 1 and spp in (1, 2)) or (photometric == 2 and spp in (3, 4))):
                kind = (f"{getattr(page.photometric, 'name', photometric)} with {spp} "
                        f"{dtype.itemsize * 8}-bit sample(s) per pixel")
            else:
                kind = None
                arr = _tiff_as_yxs(page, page.asarray())
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001  (tifffile: bad IFD, unknown compression, short data)
        raise ImageReadError(f"{p}: cannot decode TIFF ({exc}); the file may be corrupt or "
                             "truncated") from None
    if kind is not None:  # outside the try: Pillow's own messages are not wrapped again
        return _read_pillow(p, max_pixels, unidentified=(
            f"{p}: a TIFF of a kind stereosr cannot read ({kind}); save it as grey, grey + "
            "alpha, RGB or RGBA with 8 or 16 bits"))
    return np.ascontiguousarray(apply_orientation(arr, orientation))


_PILLOW_BOUND = threading.Lock()


def _open_pillow(p: Path, max_pixels: int | None) -> Image.Image:
    """``Image.open`` (header only). Pillow refuses headers over 2 x ``MAX_IMAGE_PIXELS`` on
    its own; such a file is refused with our limit's message when it is over ``max_pixels``,
    and opened anyway when ``max_pixels`` allows it (our limit is the one the user sets; it is
    checked again before anything is decoded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(p)
        except Image.DecompressionBombError as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = int(found.group(1)) if found else None
        if max_pixels is not None and (pixels is None or pixels > max_pixels):
            n = f"{pixels:,} pixels" if pixels is not None else "more pixels than that"
            raise ImageTooLargeError(
                f"{p}: image declares {n}, over the limit of {max_pixels:,} (a guard against "
                "decompression bombs); pass a larger max_pixels to read it") from None
        # Pillow's bound is a module global: lifted only for this header read, under a lock.
        # Other readers are still guarded by our own check, which every path makes.
        with _PILLOW_BOUND:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                return Image.open(p)
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def _read_pillow(p: Path, max_pixels: int | None, unidentified: str | None = None
                 ) -> np.ndarray:
    try:
        with _open_pillow(p, max_pixels) as img:
            _check_pixels(p, img.width, img.height, max_pixels)
            img.load()
            with warnings.catch_warnings():  # damaged EXIF: shown as stored, as viewers do
                warnings.simplefilter("ignore", UserWarning)
                upright = ImageOps.exif_transpose(img)
            arr = pil_to_array(upright, str(p))
    except UnidentifiedImageError:
        raise ImageReadError(unidentified or f"{p}: not an image file (or a format stereosr "
                             "cannot read; use PNG, TIFF, JPEG, BMP or WebP)") from None
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{p}: cannot decode image ({exc}); the file may be corrupt or "
                             "truncated") from None
    return arr


def _header(p: Path, max_pixels: int | None) -> tuple[int, int, int]:
    """(width, height, orientation) from the header of image file ``p``; nothing decoded."""
    with open(p, "rb") as fh:
        head = fh.read(8)
        if head == _PNG_SIGNATURE:
            return _png_header(p, fh)
    if head[:4] in _TIFF_SIGNATURES:
        import tifffile

        try:
            with tifffile.TiffFile(p) as tif:
                page = tif.pages[0]
                tag = page.tags.get(_ORIENTATION)
                return (int(page.imagewidth), int(page.imagelength),
                        int(tag.value) if tag is not None else 1)
        except Exception as exc:  # noqa: BLE001  (tifffile: bad IFD, short file)
            raise ImageReadError(f"{p}: cannot read the TIFF header ({exc}); the file may be "
                                 "corrupt or truncated") from None
    try:
        with _open_pillow(p, max_pixels) as img:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    orientation = int(img.getexif().get(_ORIENTATION, 1))
            except Exception:  # noqa: BLE001  (broken EXIF: viewers show the image as stored)
                orientation = 1
            return img.width, img.height, orientation
    except InputError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{p}: not an image file (or a format stereosr cannot read; use "
                             "PNG, TIFF, JPEG, BMP or WebP)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{p}: cannot read the image header ({exc}); the file may be "
                             "corrupt or truncated") from None


def image_size(path: str | os.PathLike[str], *,
               max_pixels: int | None | Literal["default"] = "default") -> tuple[int, int]:
    """(H, W) of an image file as :func:`read_image` would return it (orientation applied),
    from the header only. Raises :class:`ImageReadError` like :func:`read_image`, including
    :class:`ImageTooLargeError` over ``max_pixels``."""
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p}: " + ("is a folder, expected an image file" if p.is_dir()
                                         else "file not found"))
    try:
        limit = _checked_limit(max_pixels)
        width, height, orientation = _header(p, limit)
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot open ({exc.strerror})") from None
    _check_pixels(p, width, height, limit)
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def read_image(path: str | os.PathLike[str], *,
               max_pixels: int | None | Literal["default"] = "default") -> np.ndarray:
    """Read an image as (H, W, C) uint8/uint16, C in {1, 2, 3, 4}, orientation applied.

    16-bit files stay 16-bit, grey + alpha stays two channels; palette and bilevel images become
    8-bit RGB(A)/grey. ``max_pixels`` bounds width x height, checked from the header before
    decoding: by default :data:`DEFAULT_MAX_PIXELS` (or the value of an enclosing
    :func:`pixel_limit`), ``None`` for no bound.

    Raises :class:`ImageReadError` (an :class:`InputError`) with a one-line reason for missing,
    non-image, corrupt, truncated, empty or unsupported files, and its subclass
    :class:`ImageTooLargeError` for images over ``max_pixels``.
    """
    p = Path(path)
    limit = _checked_limit(max_pixels)
    if not p.exists():
        raise ImageReadError(f"{p}: file not found")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a folder, expected an image file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot open ({exc.strerror})") from None
    arr: np.ndarray | None = None
    if head == _PNG_SIGNATURE:
        arr = _read_png(p, limit)
    elif head[:4] in _TIFF_SIGNATURES:
        arr = _read_tiff(p, limit)
    if arr is None:
        arr = _read_pillow(p, limit)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"{p}: image has zero size {arr.shape[1]}x{arr.shape[0]}")
    return arr


def _as_hwc(arr: np.ndarray) -> np.ndarray:
    a = arr[..., None] if arr.ndim == 2 else arr
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"cannot write an image of shape {arr.shape}; expected (H, W) or "
                         "(H, W, C) with 1-4 channels")
    if a.dtype not in (np.uint8, np.uint16):
        raise InputError(f"cannot write dtype {a.dtype}; convert to uint8 or uint16")
    return np.ascontiguousarray(a)


def encode_image(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encode an (H, W[, C]) uint8/uint16 array (C in 1..4) as ``fmt``; the file keeps the
    channels and bit depth. PNG and TIFF take every kind; JPEG, BMP and WebP 8 bits only
    (:class:`InputError` otherwise)."""
    a = _as_hwc(arr)
    fmt = fmt.upper()
    if fmt == "PNG":
        import imagecodecs

        return bytes(imagecodecs.png_encode(a[..., 0] if a.shape[2] == 1 else a))
    if fmt == "TIFF":
        import tifffile

        buf = _io.BytesIO()
        c = a.shape[2]
        tifffile.imwrite(buf, a[..., 0] if c == 1 else a, compression="zlib", metadata=None,
                         photometric="minisblack" if c <= 2 else "rgb",
                         extrasamples=["unassalpha"] if c in (2, 4) else None)
        return buf.getvalue()
    if a.dtype != np.uint8:
        raise InputError(f"{fmt} holds 8 bits per channel; write 16-bit images as .png or .tif")
    buf = _io.BytesIO()
    try:
        array_to_pil(a).save(buf, format=fmt)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot write a {a.shape[2]}-channel image as {fmt} ({exc}); use "
                         ".png") from None
    return buf.getvalue()


def write_image(path: str | os.PathLike[str], arr: np.ndarray, overwrite: bool = False) -> None:
    """Atomically write (H, W[, C]) uint8/uint16 ``arr``; the format follows the suffix
    (.png, .tif/.tiff, .jpg/.jpeg, .bmp, .webp)."""
    p = Path(path)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
           ".bmp": "BMP", ".webp": "WEBP"}.get(p.suffix.lower())
    if fmt is None:
        raise InputError(f"{p}: unknown image extension {p.suffix!r}; use .png or .tif")
    atomic_write_bytes(p, encode_image(arr, fmt), overwrite=overwrite)
