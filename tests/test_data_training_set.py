"""Synthetic training-set builder and the synth command: layout, geometry, guards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stereosr.cli import main
from stereosr.data.pairs import find_pairs, read_disparity
from stereosr.data.synthetic import occlusion_mask
from stereosr.data.training_set import (
    SynthSettings,
    build_synthetic_set,
    gather_photos,
    resize_photo,
)
from stereosr.errors import InputError
from stereosr.io import read_image

SMALL = SynthSettings(size=(48, 120), min_size=(24, 48), max_disparity=8.0)


def smooth_photo(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth colourful uint8 image (so sub-pixel warps can be checked tightly)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
    img = Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return np.asarray(img)


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    Image.fromarray(smooth_photo(300, 500, 0)).save(d / "a.jpg", quality=95)
    Image.fromarray(smooth_photo(120, 260, 1)).save(d / "b.png")
    Image.fromarray(smooth_photo(20, 30, 2)).save(d / "tiny.png")
    return d


def test_builds_consistent_flickr1024_pairs(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "train"
    rep = build_synthetic_set([photos], out, pairs=6, seed=3, settings=SMALL)
    assert rep.pairs == 6 and sum(rep.kinds.values()) == 6
    assert [Path(p).name for p in rep.photos_skipped] == ["tiny.png"]
    pairs = find_pairs(out)
    assert pairs.layout == "flickr1024"
    assert [p.name for p in pairs] == [f"{i:04d}" for i in range(1, 7)]
    manifest = json.loads((out / "synth.json").read_text())
    for p, item in zip(pairs, manifest["items"]):
        left = read_image(p.left).astype(np.float32) / 255
        right = read_image(p.right).astype(np.float32) / 255
        assert p.disparity is not None
        disp = read_disparity(p.disparity)
        h, w = item["size"]
        assert left.shape == right.shape == (h, w, 3) and h % 12 == 0 and w % 12 == 0
        assert 24 <= h <= 48 and 48 <= w <= 120
        lo, hi = item["disparity_range"]
        assert abs(disp.min() - lo) < 0.01 and abs(disp.max() - hi) < 0.01 and hi <= 8.0 + 1e-3
        lossy = item["photo"].endswith(".jpg")
        assert item["downscale"] >= (2.0 if lossy else 1.0)
        # the written right view, warped by the written disparity, reproduces the left view
        # (and does so much worse with the disparity off by one pixel)
        ys, xs = np.mgrid[0:h, 0:w]
        errs = []
        for d in (disp, disp + 1):
            xr = xs - d
            ok = ~occlusion_mask(disp) & (xr >= 0) & (xr <= w - 1)
            x0 = np.clip(np.floor(xr).astype(int), 0, w - 2)
            t = np.clip(xr - x0, 0, 1)[..., None]
            warped = right[ys, x0] * (1 - t) + right[ys, x0 + 1] * t
            errs.append(np.abs(warped - left)[ok].mean())
        assert errs[0] < 0.01 and errs[0] < errs[1] / 4, (item, errs)


def test_same_files_with_workers_and_refuses_to_overwrite(photos: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    build_synthetic_set([photos / "a.jpg"], one, pairs=3, seed=1, settings=SMALL)
    build_synthetic_set([photos / "a.jpg"], two, pairs=3, seed=1, settings=SMALL, workers=2)
    names = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert len(names) == 9
    for n in names:
        assert (one / n).read_bytes() == (two / n).read_bytes()
    with pytest.raises(InputError, match="not empty.*overwrite=True"):
        build_synthetic_set([photos / "a.jpg"], one, pairs=3, seed=2, settings=SMALL)
    build_synthetic_set([photos / "a.jpg"], one, pairs=2, seed=2, settings=SMALL,
                        overwrite=True)
    assert sorted(p.name for p in one.glob("*.png")) == ["0001_L.png", "0001_R.png",
                                                         "0002_L.png", "0002_R.png"]
    assert sorted(p.name for p in (one / "disparity").iterdir()) == ["0001.png", "0002.png"]
    assert (one / "0001_L.png").read_bytes() != (two / "0001_L.png").read_bytes()


def test_refuses_the_test_pair(tmp_path: Path, photos: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(smooth_photo(300, 500, 3)).save(photos / "motorcycle_left.png")
    with pytest.raises(InputError, match="Motorcycle pair is the test pair"):
        gather_photos([photos])
    scene = tmp_path / "Motorcycle-perfect"
    scene.mkdir()
    Image.fromarray(smooth_photo(300, 500, 3)).save(scene / "im0.png")
    with pytest.raises(InputError, match="refusing"):
        gather_photos([scene / "im0.png"])
    assert main(["synth", str(photos), str(tmp_path / "o"), "--pairs", "1"]) == 2
    assert "refusing" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_all_photos_too_small(photos: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="too small"):
        build_synthetic_set([photos / "tiny.png"], tmp_path / "o", pairs=1, settings=SMALL)
    with pytest.raises(InputError, match="not found"):
        gather_photos([tmp_path / "missing"])


def test_resize_photo_antialiased() -> None:
    stripes = np.zeros((40, 80, 3), np.float32)
    stripes[:, ::2] = 1.0                      # finest possible detail: must average out
    small = resize_photo(stripes, 0.5)
    assert small.shape == (20, 40, 3)
    assert np.abs(small[4:-4, 4:-4] - 0.5).max() < 0.02


def test_cli_synth(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["synth", str(photos / "a.jpg"), str(photos / "b.png"), str(out), "--pairs",
                 "2", "--size", "48x120", "--min-size", "24x48", "--max-disparity", "8",
                 "--seed", "4", "--kind", "layers"]) == 0
    assert "wrote 2 pairs" in capsys.readouterr().out
    manifest = json.loads((out / "synth.json").read_text())
    assert [i["kind"] for i in manifest["items"]] == ["layers", "layers"]
    assert main(["synth", str(photos), str(out), "--pairs", "1"]) == 2


def test_a_bad_photo_leaves_nothing_that_blocks_the_next_run(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    """A photo refused from its header (a decompression bomb) stops synth before anything is
    written, so the same command with good photos then runs without --overwrite."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(
        ">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b""))
    out = tmp_path / "out"
    assert main(["synth", str(bomb), str(out), "--pairs", "1"]) == 2
    assert "decompression bombs" in capsys.readouterr().err
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(small)
    assert main(["synth", str(small), str(out), "--pairs", "1"]) == 2
    err = capsys.readouterr().err
    assert "not empty" not in err and "too small" in err
