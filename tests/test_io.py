"""Image reading and writing: every mode x bit depth x format the docs promise, checked against
independent codecs (pypng, a pure-Python PNG implementation; libtiff through imagecodecs;
Pillow), orientation, the pixel limit, and the messages of bad files."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import png
import pytest
from PIL import Image, ImageOps

from stereosr.errors import ImageReadError, ImageTooLargeError, InputError
from stereosr.imageops import apply_orientation
from stereosr.io import atomic_write_bytes, read_image, write_image

# channels -> (pypng greyscale, alpha)
_PNG_KIND = {1: (True, False), 2: (True, True), 3: (False, False), 4: (False, True)}


def _pattern(h: int, w: int, c: int, dtype: type, seed: int = 0) -> np.ndarray:
    hi = 65536 if dtype == np.uint16 else 256
    return np.random.default_rng(seed).integers(0, hi, (h, w, c), dtype=dtype)


def _pypng_bytes(arr: np.ndarray, interlace: bool = False) -> bytes:
    h, w, c = arr.shape
    grey, alpha = _PNG_KIND[c]
    buf = io.BytesIO()
    png.Writer(w, h, greyscale=grey, alpha=alpha, bitdepth=8 * arr.itemsize,
               interlace=interlace).write(buf, arr.reshape(h, w * c).astype(np.int64).tolist())
    return buf.getvalue()


def _pypng_read(path: Path) -> np.ndarray:
    w, h, rows, info = png.Reader(filename=str(path)).read()
    c = info["planes"]
    dtype = np.uint16 if info["bitdepth"] == 16 else np.uint8
    return np.array([list(r) for r in rows], dtype=dtype).reshape(h, w, c)


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + tag + payload
            + struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF))


def _with_exif(png_bytes: bytes, orientation: int, after_idat: bool) -> bytes:
    """Insert an eXIf chunk holding ``orientation`` before the first IDAT or before IEND."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif") else exif.tobytes()
    at = png_bytes.rfind(b"IEND") - 4 if after_idat else png_bytes.find(b"IDAT") - 4
    return png_bytes[:at] + _chunk(b"eXIf", payload) + png_bytes[at:]


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_read_matches_pypng(tmp_path, channels, dtype, interlace):
    arr = _pattern(7, 11, channels, dtype)
    path = tmp_path / "a.png"
    path.write_bytes(_pypng_bytes(arr, interlace))
    got = read_image(path)
    assert got.dtype == dtype and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_write_read_by_pypng(tmp_path, channels, dtype):
    arr = _pattern(6, 9, channels, dtype, seed=1)
    write_image(tmp_path / "a.png", arr)
    np.testing.assert_array_equal(_pypng_read(tmp_path / "a.png"), arr)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), arr)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_tiff_read_matches_libtiff_writer(tmp_path, channels, dtype):
    arr = _pattern(5, 8, channels, dtype, seed=2)
    extrasample = 2 if channels in (2, 4) else None  # unassociated alpha
    data = imagecodecs.tiff_encode(arr if channels > 1 else arr[..., 0],
                                   photometric="minisblack" if channels <= 2 else "rgb",
                                   extrasample=extrasample)
    (tmp_path / "a.tif").write_bytes(data)
    got = read_image(tmp_path / "a.tif")
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_tiff_write_read_by_libtiff(tmp_path, channels, dtype):
    arr = _pattern(5, 8, channels, dtype, seed=3)
    write_image(tmp_path / "a.tiff", arr)
    back = imagecodecs.tiff_decode((tmp_path / "a.tiff").read_bytes())
    np.testing.assert_array_equal(back.reshape(arr.shape), arr)


def test_eight_bit_formats_match_pillow(tmp_path):
    arr = _pattern(6, 10, 3, np.uint8, seed=4)
    rgb = Image.fromarray(arr)
    cases = {
        "p.png": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8),
        "bw.png": rgb.convert("1"),
        "q.bmp": rgb,
        "l.webp": rgb.convert("L"),
        "c.tif": rgb.convert("CMYK"),
    }
    for name, img in cases.items():
        img.save(tmp_path / name, **({"lossless": True} if name.endswith("webp") else {}))
        with Image.open(tmp_path / name) as ref:
            want = np.asarray(ref.convert("L" if ref.mode in ("1", "L") else "RGB"))
        got = read_image(tmp_path / name)
        np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=name)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_matches_pillow(orientation):
    arr = _pattern(3, 5, 3, np.uint8, seed=5)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.info["exif"] = exif.tobytes()
    want = np.asarray(ImageOps.exif_transpose(img))
    np.testing.assert_array_equal(apply_orientation(arr, orientation), want)


@pytest.mark.parametrize("after_idat", [False, True])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_orientation_like_8bit(tmp_path, channels, after_idat):
    """The same picture, stored as 8 and as 16 bits with orientation 6, reads the same way up;
    the 8-bit file is turned by Pillow (an independent implementation of the rule)."""
    a16 = _pattern(4, 6, channels, np.uint16, seed=6)
    a8 = (a16 >> 8).astype(np.uint8)
    p8, p16 = tmp_path / "a8.png", tmp_path / "a16.png"
    p16.write_bytes(_with_exif(_pypng_bytes(a16), 6, after_idat))
    p8.write_bytes(_with_exif(_pypng_bytes(a8), 6, after_idat=False))
    with Image.open(p8) as im:
        ref = np.asarray(ImageOps.exif_transpose(im)).reshape(6, 4, channels)
    got = read_image(p16)
    assert got.dtype == np.uint16 and got.shape == (6, 4, channels)
    np.testing.assert_array_equal((got >> 8).astype(np.uint8), ref)
    np.testing.assert_array_equal(read_image(p8), ref)


def test_tiff_and_jpeg_orientation(tmp_path):
    a16 = _pattern(4, 6, 3, np.uint16, seed=7)
    import tifffile

    tifffile.imwrite(tmp_path / "o.tif", a16, photometric="rgb",
                     extratags=[(274, "H", 1, 8, False)])
    np.testing.assert_array_equal(read_image(tmp_path / "o.tif"), np.rot90(a16, 1))
    exif = Image.Exif()
    exif[0x0112] = 3
    Image.fromarray((a16 >> 8).astype(np.uint8)).save(tmp_path / "o.jpg", exif=exif.tobytes())
    with Image.open(tmp_path / "o.jpg") as im:
        ref = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(read_image(tmp_path / "o.jpg"), ref)


def _ihdr_png(w: int, h: int, depth: int = 16, ctype: int = 2) -> bytes:
    """A PNG header declaring w x h, followed by a little (valid) compressed data."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def test_pixel_limit_checked_before_decoding(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_ihdr_png(30000, 30000))

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded an image over the limit")

    monkeypatch.setattr(imagecodecs, "png_decode", no_decode)
    with pytest.raises(ImageTooLargeError, match="30000x30000 = 900,000,000 pixels.*max_pixels"):
        read_image(bomb)
    small = tmp_path / "small.png"
    small.write_bytes(_pypng_bytes(_pattern(10, 20, 3, np.uint8)))
    with pytest.raises(ImageTooLargeError, match="20x10 = 200 pixels, over the limit of 199"):
        read_image(small, max_pixels=199)
    monkeypatch.undo()
    assert read_image(small, max_pixels=200).shape == (10, 20, 3)
    assert read_image(small, max_pixels=None).shape == (10, 20, 3)


def test_pillow_bomb_error_is_one_line(tmp_path):
    from stereosr.io import image_size

    """A header beyond Pillow's own bound (2 x MAX_IMAGE_PIXELS) never escapes as Pillow's
    DecompressionBombError, whatever limit is asked for."""
    big = tmp_path / "big.bmp"
    header = struct.pack("<2sIHHI", b"BM", 0, 0, 0, 54) + struct.pack(
        "<IiiHHIIiiII", 40, 60000, 60000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    big.write_bytes(header + b"\0" * 64)
    for limit in ("default", 2 * 10**9):
        with pytest.raises(ImageTooLargeError, match="big.bmp") as info:
            read_image(big, max_pixels=limit)
        msg = str(info.value)
        assert "\n" not in msg and msg.count("big.bmp") == 1
        assert "3,600,000,000 pixels" in msg and "pass a larger max_pixels" in msg
        with pytest.raises(ImageTooLargeError) as info:
            image_size(big, max_pixels=limit)
        assert str(info.value) == msg  # not wrapped in a second message
    # a limit the user raised above Pillow's own bound is the one that counts (header only)
    assert image_size(big, max_pixels=10**12) == image_size(big, max_pixels=None) == (
        60000, 60000)
    tif = tmp_path / "big.tif"  # a TIFF header declaring 60000 x 60000 grey, one strip
    tags = [(256, 4, 60000), (257, 4, 60000), (258, 3, 8), (259, 3, 1), (262, 3, 1),
            (273, 4, 8), (278, 4, 60000), (279, 4, 60000 * 60000)]
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHII", t, typ, 1, v) for t, typ, v in tags) + b"\0\0\0\0"
    tif.write_bytes(b"II*\0" + struct.pack("<I", 8) + ifd + b"\0" * 64)
    with pytest.raises(ImageTooLargeError, match="60000x60000"):
        read_image(tif)


@pytest.mark.parametrize("kind", ["float-tiff", "truncated", "garbage", "text", "folder"])
def test_bad_files_one_clear_line(tmp_path, kind):
    import tifffile

    path = tmp_path / "x.png"
    if kind == "float-tiff":
        path = tmp_path / "x.tif"
        tifffile.imwrite(path, np.zeros((4, 4), np.float32))
    elif kind == "truncated":
        data = _pypng_bytes(_pattern(40, 40, 3, np.uint16))
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    elif kind == "text":
        path = tmp_path / "x.txt"
        path.write_text("hello")
    else:
        path.mkdir()
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.count(str(path)) == 1, msg
    expected = {"float-tiff": "floating-point images are not supported",
                "truncated": "corrupt or truncated", "garbage": "not an image",
                "text": "not an image", "folder": "is a folder"}[kind]
    assert expected in msg
    if kind == "float-tiff":  # a valid file of an unsupported kind: no corruption hint
        assert "corrupt" not in msg and "truncated" not in msg


def test_16bit_to_eight_bit_only_formats_refused(tmp_path):
    with pytest.raises(InputError, match="8 bits.*png"):
        write_image(tmp_path / "a.jpg", _pattern(4, 4, 3, np.uint16))
    assert not (tmp_path / "a.jpg").exists()


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_image(tmp_path / "a.png", _pattern(4, 4, 1, np.uint8))
        atomic_write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    for name in ("a.png", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640


def test_image_size_from_header_matches_read_image(tmp_path, monkeypatch):
    from stereosr.io import image_size

    a16 = _pattern(4, 6, 2, np.uint16, seed=8)
    (tmp_path / "o.png").write_bytes(_with_exif(_pypng_bytes(a16), 8, after_idat=True))
    write_image(tmp_path / "t.tif", a16)
    Image.fromarray(_pattern(5, 3, 3, np.uint8)).save(tmp_path / "j.jpg")
    files = [tmp_path / n for n in ("o.png", "t.tif", "j.jpg")]
    want = [read_image(f).shape[:2] for f in files]
    monkeypatch.setattr(imagecodecs, "png_decode", None)  # header only: nothing decoded
    assert [image_size(f) for f in files] == want == [(6, 4), (4, 6), (5, 3)]
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_ihdr_png(30000, 30000))
    with pytest.raises(ImageTooLargeError):
        image_size(bomb)


def _upscale_with_max_pixels(tmp_path: Path, capsys, limit: str) -> tuple[int, str]:
    """``stereosr upscale`` of a 12 x 8 pair with ``--max-pixels limit``: (status, stderr)."""
    from stereosr.cli import main

    for n in ("l", "r"):
        write_image(tmp_path / f"{n}.png", _pattern(8, 12, 3, np.uint8))
    rc = main(["upscale", str(tmp_path / "l.png"), str(tmp_path / "r.png"), "-o",
               str(tmp_path / "o"), "--max-pixels", limit])
    return rc, capsys.readouterr().err


def test_cli_max_pixels(tmp_path, capsys):
    rc, err = _upscale_with_max_pixels(tmp_path, capsys, "95")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "12x8 = 96 pixels, over the limit of 95" in err and "--max-pixels" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_max_pixels_above_pillows_bound_reads_pillow_formats(tmp_path, monkeypatch):
    """Pillow refuses headers over 2 x PIL.Image.MAX_IMAGE_PIXELS by itself; a larger
    max_pixels (the command line's --max-pixels) reads such JPEG/BMP/WebP files all the same,
    and Pillow's bound is left as it was."""
    arr = _pattern(20, 30, 3, np.uint8, seed=4)
    Image.fromarray(arr).save(tmp_path / "a.bmp")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's bound: 200 pixels
    with pytest.raises(ImageTooLargeError, match="600 pixels, over the limit of 599"):
        read_image(tmp_path / "a.bmp", max_pixels=599)
    np.testing.assert_array_equal(read_image(tmp_path / "a.bmp", max_pixels=600), arr)
    np.testing.assert_array_equal(read_image(tmp_path / "a.bmp", max_pixels=None), arr)
    assert Image.MAX_IMAGE_PIXELS == 100


@pytest.mark.parametrize("cut", [9, 16, 20, 28, 32])
def test_png_cut_inside_its_header(tmp_path, cut):
    data = _pypng_bytes(_pattern(6, 6, 3, np.uint16))
    path = tmp_path / "cut.png"
    path.write_bytes(data[:cut])
    from stereosr.io import image_size

    # up to byte 28 the header itself is cut; at 32 only the image data is missing, which
    # image_size (header only) does not read
    for call in (read_image, image_size) if cut < 29 else (read_image,):
        with pytest.raises(ImageReadError) as info:
            call(path)
        msg = str(info.value)
        assert "\n" not in msg and msg.count(str(path)) == 1
        assert "truncated" in msg or "corrupt" in msg


@pytest.mark.parametrize("dtype,value,text", [
    (np.int8, -3, "signed 8-bit integer samples"),
    (np.int16, 100, "signed 16-bit integer samples"),
    (np.uint32, 100, "unsigned 32-bit integer samples"),
    (np.int32, 7, "signed 32-bit integer samples"),
])
def test_tiff_sample_kinds_without_an_image_scale_refused(tmp_path, dtype, value, text):
    """Signed samples would wrap (int8 -3 read as 253) and 32-bit ones have no agreed scale:
    refused whatever the values, in one line without a corruption hint (the file is valid)."""
    import tifffile

    path = tmp_path / "x.tif"
    tifffile.imwrite(path, np.full((4, 5), value, dtype))
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    msg = str(info.value)
    assert text in msg and msg.count(str(path)) == 1 and "\n" not in msg
    assert "corrupt" not in msg and "truncated" not in msg


def test_tiff_of_an_unreadable_layout_says_what_it_is(tmp_path):
    import tifffile

    path = tmp_path / "x.tif"
    tifffile.imwrite(path, np.full((4, 5, 3), 1000, np.uint16), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    msg = str(info.value)
    assert "MINISBLACK with 3 16-bit sample(s) per pixel" in msg and "not an image" not in msg


def test_damaged_orientation_is_quiet_and_ignored(tmp_path, capfd, caplog):
    """An Orientation outside 1..8 (TIFF) or a cut eXIf chunk (PNG): the image is used as
    stored, as viewers do, with nothing printed (tifffile logs and Pillow warns otherwise)."""
    import tifffile

    arr = _pattern(4, 6, 3, np.uint16, seed=9)
    tifffile.imwrite(tmp_path / "o.tif", arr, photometric="rgb",
                     extratags=[(274, "H", 1, 9, True)])
    cut_ifd = b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0"  # cut inside its entry
    data = _pypng_bytes(arr)
    at = data.rfind(b"IEND") - 4
    (tmp_path / "o.png").write_bytes(data[:at] + _chunk(b"eXIf", cut_ifd) + data[at:])
    import logging
    import warnings

    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        for name in ("o.tif", "o.png"):
            np.testing.assert_array_equal(read_image(tmp_path / name), arr)
    out, err = capfd.readouterr()
    assert out == "" and err == "", err
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_exif_chunk_with_exif_header_is_read_quietly(tmp_path, capfd, caplog):
    """Some writers start the eXIf chunk with "Exif\\0\\0" (as in JPEG); libpng calls it
    invalid and logs so, but the orientation in it is applied, as Pillow reads it."""
    import logging

    arr = _pattern(4, 6, 3, np.uint16, seed=10)
    exif = Image.Exif()
    exif[0x0112] = 6
    payload = exif.tobytes()
    assert payload.startswith(b"Exif\0\0")
    data = _pypng_bytes(arr)
    at = data.find(b"IDAT") - 4
    (tmp_path / "x.png").write_bytes(data[:at] + _chunk(b"eXIf", payload) + data[at:])
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG):
        got = read_image(tmp_path / "x.png")
    np.testing.assert_array_equal(got, apply_orientation(arr, 6))
    assert capfd.readouterr().err == ""
    assert [r.getMessage() for r in caplog.records if r.name == "imagecodecs"] == []


@pytest.mark.parametrize("bad", [0, -5, 2.5, "100", True])
def test_max_pixels_must_be_a_positive_whole_number(tmp_path, bad):
    from stereosr.io import image_size, pixel_limit

    path = tmp_path / "a.png"
    path.write_bytes(_pypng_bytes(_pattern(5, 7, 3, np.uint8)))
    for call in (lambda: read_image(path, max_pixels=bad),
                 lambda: image_size(path, max_pixels=bad),
                 lambda: pixel_limit(bad).__enter__()):
        with pytest.raises(InputError, match="max_pixels must be a positive whole number"):
            call()
    assert read_image(path, max_pixels=np.int64(35)).shape == (5, 7, 3)


def test_cli_max_pixels_zero_names_the_flag(tmp_path, capsys):
    rc, err = _upscale_with_max_pixels(tmp_path, capsys, "0")
    assert rc == 2 and "--max-pixels must be a positive whole number of pixels, got 0" in err
