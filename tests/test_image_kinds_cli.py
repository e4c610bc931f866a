"""16-bit in, 16-bit out, through the command line: every PNG/TIFF mode, interlaced PNG and
EXIF orientation; outputs are checked with an independent PNG reader (pypng)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
from PIL import Image

from stereosr.cli import main
from stereosr.infer import upscale
from stereosr.io import read_image, write_image
from stereosr.models.checkpoint import load_model


def _png16(arr: np.ndarray, interlace: bool = False, orientation: int | None = None) -> bytes:
    h, w, c = arr.shape
    buf = io.BytesIO()
    png.Writer(w, h, greyscale=c <= 2, alpha=c in (2, 4), bitdepth=16,
               interlace=interlace).write(buf, arr.reshape(h, w * c).astype(np.int64).tolist())
    data = buf.getvalue()
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        payload = exif.tobytes()[6:]  # without the "Exif\0\0" prefix
        chunk = (struct.pack(">I", len(payload)) + b"eXIf" + payload
                 + struct.pack(">I", zlib.crc32(b"eXIf" + payload)))
        at = data.rfind(b"IEND") - 4
        data = data[:at] + chunk + data[at:]
    return data


def _pypng(path: Path) -> tuple[np.ndarray, dict]:
    w, h, rows, info = png.Reader(filename=str(path)).read()
    arr = np.array([list(r) for r in rows], dtype=np.uint16).reshape(h, w, info["planes"])
    return arr, info


@pytest.mark.parametrize("case", ["grey", "grey+alpha", "rgb", "rgba", "rgb-interlaced",
                                  "rgba-tiff", "grey+alpha-tiff"])
def test_upscale_keeps_16_bits_and_mode(tmp_path, weights, capsys, case):
    c = {"grey": 1, "grey+alpha": 2, "rgb": 3, "rgba": 4}[case.split("-")[0]]
    rng = np.random.default_rng(c)
    views = [rng.integers(0, 65536, (6, 10, c), dtype=np.uint16) for _ in range(2)]
    paths = []
    for n, v in zip("lr", views):
        if case.endswith("tiff"):
            write_image(tmp_path / f"{n}.tif", v)
            paths.append(tmp_path / f"{n}.tif")
        else:
            (tmp_path / f"{n}.png").write_bytes(_png16(v, interlace="interlaced" in case))
            paths.append(tmp_path / f"{n}.png")
    rc = main(["upscale", str(paths[0]), str(paths[1]), "-o", str(tmp_path / "o"),
               "--weights", str(weights)])
    assert rc == 0, capsys.readouterr().err
    out, info = _pypng(tmp_path / "o" / "l.png")
    assert info["bitdepth"] == 16 and info["planes"] == c
    assert info["greyscale"] == (c <= 2) and info["alpha"] == (c in (2, 4))
    ref, _ = upscale(views[0], views[1], load_model(weights))
    np.testing.assert_array_equal(out, ref.reshape(out.shape))


def test_upscale_applies_orientation_of_16bit_png(tmp_path, weights, capsys):
    rng = np.random.default_rng(9)
    views = [rng.integers(0, 65536, (6, 10, 3), dtype=np.uint16) for _ in range(2)]
    for n, v in zip("lr", views):
        (tmp_path / f"{n}.png").write_bytes(_png16(v, orientation=6))
    rc = main(["upscale", str(tmp_path / "l.png"), str(tmp_path / "r.png"), "-o",
               str(tmp_path / "o"), "--weights", str(weights)])
    assert rc == 0, capsys.readouterr().err
    out = read_image(tmp_path / "o" / "l.png")
    assert out.dtype == np.uint16 and out.shape == (20, 12, 3)  # 10x6 turned upright, x2
    ref, _ = upscale(np.rot90(views[0], -1), np.rot90(views[1], -1), load_model(weights))
    np.testing.assert_array_equal(out, ref)
