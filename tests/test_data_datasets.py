"""StereoSRDataset: modcrop, LR from disk / MATLAB bicubic / a degrade callable, caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stereosr.data.datasets import StereoSRDataset
from stereosr.degrade.bicubic import imresize
from stereosr.errors import InputError
from stereosr.io import write_image


def rand_img(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture()
def flickr(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(0)
    views = {}
    for name, (h, w) in (("2", (13, 26)), ("10", (17, 23))):
        left, right = rand_img(rng, h, w), rand_img(rng, h, w)
        write_image(tmp_path / f"{name}_L.png", left)
        write_image(tmp_path / f"{name}_R.png", right)
        views[name] = (left, right)
    return tmp_path, views


def test_bicubic_lr_of_modcropped_hr(flickr: tuple[Path, dict]) -> None:
    root, views = flickr
    ds = StereoSRDataset(root, scale=4)
    assert len(ds) == 2
    item = ds[1]                                     # natural order: "2", "10"
    assert item["name"] == "10"
    left, right = views["10"]
    hr_l, hr_r = left[:16, :20], right[:16, :20]     # 17x23 cropped to multiples of 4
    np.testing.assert_array_equal(item["hr_left"], hr_l.astype(np.float32) / 255)
    np.testing.assert_array_equal(item["hr_right"], hr_r.astype(np.float32) / 255)
    np.testing.assert_array_equal(item["lr_left"], imresize(hr_l, 0.25).astype(np.float32) / 255)
    np.testing.assert_array_equal(item["lr_right"],
                                  imresize(hr_r, 0.25).astype(np.float32) / 255)
    for k in ("lr_left", "lr_right", "hr_left", "hr_right"):
        assert item[k].dtype == np.float32 and item[k].flags.c_contiguous
    assert item["lr_left"].shape == (4, 5, 3)
    assert ds[-2]["name"] == "2"
    with pytest.raises(IndexError):
        ds[2]


def test_lr_from_disk_and_size_check(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    d = tmp_path / "000001"
    d.mkdir()
    hr0, hr1, lr0, lr1 = (rand_img(rng, 8, 12), rand_img(rng, 8, 12), rand_img(rng, 2, 3),
                          rand_img(rng, 2, 3))
    for n, a in (("hr0", hr0), ("hr1", hr1), ("lr0", lr0), ("lr1", lr1)):
        write_image(d / f"{n}.png", a)
    item = StereoSRDataset(tmp_path, scale=4)[0]
    np.testing.assert_array_equal(item["lr_left"], lr0 / np.float32(255))
    np.testing.assert_array_equal(item["lr_right"], lr1 / np.float32(255))
    np.testing.assert_array_equal(item["hr_right"], hr1 / np.float32(255))
    # asking for bicubic ignores the files
    item_b = StereoSRDataset(tmp_path, scale=4, lr_source="bicubic")[0]
    np.testing.assert_array_equal(item_b["lr_left"], imresize(hr0, 0.25) / np.float32(255))
    with pytest.raises(InputError, match=r"lr0\.png: LR view is 3x2 but x2"):
        StereoSRDataset(tmp_path, scale=2)[0]


def test_disk_needs_lr_files(flickr: tuple[Path, dict]) -> None:
    with pytest.raises(InputError, match="has no LR files"):
        StereoSRDataset(flickr[0], scale=4, lr_source="disk")


def test_degrade_callable_seeded_per_index_and_epoch(flickr: tuple[Path, dict]) -> None:
    root, views = flickr
    calls = []

    def degrade(hr_l: np.ndarray, hr_r: np.ndarray, scale: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        calls.append((hr_l.shape, hr_l.dtype, scale))
        noise = rng.normal(0, 0.01, size=(hr_l.shape[0] // scale, hr_l.shape[1] // scale, 3))
        lr_l = imresize(hr_l.astype(np.float64), 1 / scale) + noise
        return lr_l, imresize(hr_r.astype(np.float64), 1 / scale) + noise

    ds = StereoSRDataset(root, scale=2, degrade=degrade, seed=5)
    a, b = ds[0], ds[0]
    assert calls[0] == ((12, 26, 3), np.float32, 2)
    np.testing.assert_array_equal(a["lr_left"], b["lr_left"])
    ds.set_epoch(1)
    c = ds[0]
    assert not np.array_equal(a["lr_left"], c["lr_left"])
    assert a["lr_left"].min() >= 0 and a["lr_left"].max() <= 1      # clipped
    clean = imresize(views["2"][0][:12].astype(np.float64) / 255, 0.5)
    assert np.abs(a["lr_left"] - np.clip(clean, 0, 1)).max() < 0.06

    def wrong(hr_l: np.ndarray, hr_r: np.ndarray, scale: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return hr_l, hr_r

    with pytest.raises(ValueError, match="expected"):
        StereoSRDataset(root, scale=2, degrade=wrong)[0]


def test_cache_keeps_images(flickr: tuple[Path, dict]) -> None:
    root, _ = flickr
    ds = StereoSRDataset(root, scale=2, cache=True)
    first = ds[0]
    for f in root.glob("*.png"):
        f.unlink()
    again = ds[0]
    for k in ("lr_left", "lr_right", "hr_left", "hr_right"):
        np.testing.assert_array_equal(first[k], again[k])
    with pytest.raises(InputError, match="file not found"):
        ds[1]


def test_grey_and_16bit_inputs(tmp_path: Path) -> None:
    grey = np.arange(64, dtype=np.uint16).reshape(8, 8, 1) * 1000
    write_image(tmp_path / "a_L.png", grey)
    write_image(tmp_path / "a_R.png", grey)
    item = StereoSRDataset(tmp_path, scale=2)[0]
    assert item["hr_left"].shape == (8, 8, 3)
    np.testing.assert_allclose(item["hr_left"][..., 1], grey[..., 0] / 65535.0, atol=1e-7)


def test_bad_arguments(flickr: tuple[Path, dict]) -> None:
    with pytest.raises(InputError, match="scale"):
        StereoSRDataset(flickr[0], scale=0)
    with pytest.raises(InputError, match="lr_source"):
        StereoSRDataset(flickr[0], scale=2, lr_source="file")
