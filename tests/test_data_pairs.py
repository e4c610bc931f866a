"""find_pairs over every supported layout, natural sorting, bad pairs, disparity files."""

from __future__ import annotations

import random
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stereosr.data.pairs import (
    BadPairWarning,
    PairFiles,
    detect_layout,
    find_pairs,
    natural_key,
    read_disparity,
)
from stereosr.errors import InputError
from stereosr.io import read_image, write_image
from stereosr.models import NAFSSR, NAFSSRConfig
from stereosr.models.checkpoint import save_model


def png(path: Path, h: int = 4, w: int = 6, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, dtype=np.uint8)).save(path)
    return path


def test_flickr1024_natural_order_and_ignored_files(tmp_path: Path) -> None:
    names = [str(i) for i in (1, 2, 10, 11, 3)]
    random.Random(0).shuffle(names)
    for n in names:
        png(tmp_path / f"{n}_L.png")
        png(tmp_path / f"{n}_R.png")
    png(tmp_path / "notes.png")                 # not part of any pair
    png(tmp_path / ".7_L.png.tmp.png")          # hidden temporary file
    pairs = find_pairs(tmp_path)
    assert pairs.layout == "flickr1024"
    assert [p.name for p in pairs] == ["1", "2", "3", "10", "11"]
    assert pairs[3] == PairFiles("10", tmp_path / "10_L.png", tmp_path / "10_R.png")


def test_natural_key() -> None:
    items = ["img10", "img2", "Img1", "img2b", "a"]
    assert sorted(items, key=natural_key) == ["a", "Img1", "img2", "img2b", "img10"]


def test_suffix_layout(tmp_path: Path) -> None:
    png(tmp_path / "scene_left.png")
    png(tmp_path / "scene_right.png")
    png(tmp_path / "b-Left.jpg")
    png(tmp_path / "b-Right.jpg")
    pairs = find_pairs(tmp_path)
    assert pairs.layout == "suffix"
    assert [(p.name, p.left.name, p.right.name) for p in pairs] == [
        ("b", "b-Left.jpg", "b-Right.jpg"), ("scene", "scene_left.png", "scene_right.png")]


def write_pfm(path: Path, arr: np.ndarray) -> None:
    h, w = arr.shape
    with open(path, "wb") as fh:
        fh.write(b"Pf\n" + f"{w} {h}\n".encode() + b"-1.0\n")
        fh.write(np.ascontiguousarray(arr[::-1], dtype="<f4").tobytes())


def test_middlebury_with_pfm_disparity(tmp_path: Path) -> None:
    for scene in ("Piano", "Adirondack"):
        png(tmp_path / scene / "im0.png")
        png(tmp_path / scene / "im1.png")
    disp = np.arange(24, dtype=np.float32).reshape(4, 6)
    disp[0, 0] = np.inf
    write_pfm(tmp_path / "Piano" / "disp0.pfm", disp)
    pairs = find_pairs(tmp_path)
    assert pairs.layout == "middlebury"
    assert [p.name for p in pairs] == ["Adirondack", "Piano"]
    assert pairs[0].disparity is None
    assert pairs[1].disparity == tmp_path / "Piano" / "disp0.pfm"
    np.testing.assert_array_equal(read_disparity(pairs[1].disparity), disp)
    # the scene folder itself is also accepted
    one = find_pairs(tmp_path / "Piano")
    assert [(p.name, p.left.name) for p in one] == [("Piano", "im0.png")]


def test_subfolders(tmp_path: Path) -> None:
    for n in ("b.png", "a.png"):
        png(tmp_path / "left" / n)
        png(tmp_path / "right" / n)
    pairs = find_pairs(tmp_path)
    assert pairs.layout == "subfolders"
    assert [(p.name, p.left, p.right) for p in pairs] == [
        ("a", tmp_path / "left/a.png", tmp_path / "right/a.png"),
        ("b", tmp_path / "left/b.png", tmp_path / "right/b.png")]


def test_official_patches(tmp_path: Path) -> None:
    for i in (2, 1, 10):
        d = tmp_path / f"{i:06d}"
        png(d / "hr0.png", 8, 12)
        png(d / "hr1.png", 8, 12)
        png(d / "lr0.png", 2, 3)
        png(d / "lr1.png", 2, 3)
    pairs = find_pairs(tmp_path)
    assert pairs.layout == "patches"
    assert [p.name for p in pairs] == ["000001", "000002", "000010"]
    p = pairs[0]
    assert (p.left.name, p.right.name, p.lr_left.name, p.lr_right.name) == (  # type: ignore
        "hr0.png", "hr1.png", "lr0.png", "lr1.png")


def test_official_test_layout_several_sets(tmp_path: Path) -> None:
    for s in ("KITTI2012", "Middlebury"):
        for scene in ("2", "10"):
            png(tmp_path / s / "hr" / scene / "hr0.png", 8, 12)
            png(tmp_path / s / "hr" / scene / "hr1.png", 8, 12)
            for sc, hw in ((2, (4, 6)), (4, (2, 3))):
                png(tmp_path / s / f"lr_x{sc}" / scene / "lr0.png", *hw)
                png(tmp_path / s / f"lr_x{sc}" / scene / "lr1.png", *hw)
    pairs = find_pairs(tmp_path, scale=4)
    assert pairs.layout == "official_test"
    assert [p.name for p in pairs] == ["KITTI2012/2", "KITTI2012/10", "Middlebury/2",
                                       "Middlebury/10"]
    assert pairs[1].lr_left == tmp_path / "KITTI2012/lr_x4/10/lr0.png"
    # one set as root; several LR scales and no scale given: HR only
    single = find_pairs(tmp_path / "Middlebury")
    assert [p.name for p in single] == ["2", "10"]
    assert single[0].lr_left is None
    assert find_pairs(tmp_path / "Middlebury", scale=2)[0].lr_right == (
        tmp_path / "Middlebury/lr_x2/2/lr1.png")


def test_kitti_with_png_disparity(tmp_path: Path) -> None:
    for n in ("000001_10", "000000_10", "000000_11"):
        png(tmp_path / "image_2" / f"{n}.png")
        png(tmp_path / "image_3" / f"{n}.png")
    raw = np.array([[0, 256, 512, 1000, 3, 65535]] * 4, dtype=np.uint16)
    (tmp_path / "disp_occ_0").mkdir()
    write_image(tmp_path / "disp_occ_0" / "000000_10.png", raw[..., None])
    pairs = find_pairs(tmp_path)
    assert pairs.layout == "kitti"
    assert [p.name for p in pairs] == ["000000_10", "000000_11", "000001_10"]
    assert pairs[0].disparity is not None and pairs[1].disparity is None
    d = read_disparity(pairs[0].disparity)
    expect = raw.astype(np.float32) / 256.0
    expect[raw == 0] = np.inf
    np.testing.assert_array_equal(d, expect)


def test_kitti2012_colored_folders(tmp_path: Path) -> None:
    png(tmp_path / "colored_0" / "000003_10.png")
    png(tmp_path / "colored_1" / "000003_10.png")
    pairs = find_pairs(tmp_path)
    assert pairs.layout == "kitti" and pairs[0].right == tmp_path / "colored_1/000003_10.png"


def test_plain_scene_folders(tmp_path: Path) -> None:
    png(tmp_path / "s10" / "left.png")
    png(tmp_path / "s10" / "right.png")
    png(tmp_path / "s9" / "view1.png")
    png(tmp_path / "s9" / "view5.png")
    pairs = find_pairs(tmp_path)
    assert pairs.layout == "folders"
    assert [(p.name, p.left.name, p.right.name) for p in pairs] == [
        ("s9", "view1.png", "view5.png"), ("s10", "left.png", "right.png")]
    single = find_pairs(tmp_path / "s10")
    assert single.layout == "folders" and single[0].left == tmp_path / "s10/left.png"
    # A scene folder with the views of two pairs: neither is silently left out.
    png(tmp_path / "s9" / "L.png")
    png(tmp_path / "s9" / "R.png")
    with pytest.raises(InputError, match=r"s9: holds views of several pairs \(l/r, view1/view5\); "
                                         "keep one pair per scene folder"):
        find_pairs(tmp_path)
    with pytest.warns(BadPairWarning):
        left = find_pairs(tmp_path, on_error="skip")
    assert [p.name for p in left] == ["s10"] and left.skipped[0][0] == "s9"


def test_pairs_of_another_layout_left_out_are_said(tmp_path: Path) -> None:
    from stereosr.errors import StereoSRWarning

    flat, scenes = tmp_path / "flat", tmp_path / "scenes"
    for name in ("0001_L", "0001_R", "x_left", "x_right", "y_left", "y_right"):
        png(flat / f"{name}.png")
    for name in ("A/im0", "A/im1", "s1/left", "s1/right"):
        png(scenes / f"{name}.png")
    for root, read, other, names in ((flat, "flickr1024", "suffix", "x, y"),
                                     (scenes, "middlebury", "folders", "s1")):
        with pytest.warns(StereoSRWarning) as got:
            pairs = find_pairs(root)
        assert pairs.layout == read and len(pairs) == 1
        expect = (f"{root}: read as layout {read!r}; {len(names.split(', '))} pair(s) of "
                  f"layout {other!r} there are left out ({names}); give one layout per folder, "
                  "or the layout to read")
        assert [str(w.message) for w in got] == [expect]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert len(find_pairs(root, layout=other)) == len(names.split(", "))
    # A flat layout with images in a sub-folder (the flickr1024 disparity/ folder is its own).
    png(flat / "disparity" / "0001.png")
    png(flat / "more" / "0002_L.png")
    png(flat / "more" / "0002_R.png")
    with pytest.warns(StereoSRWarning) as got:
        find_pairs(flat)
    assert f"{flat}: read as layout 'flickr1024', which takes the images directly in it; the " \
        "images in its sub-folder(s) more are left out (give each folder on its own)" in \
        [str(w.message) for w in got]
    shutil.rmtree(flat / "more")
    # The command line says it in one line, and --layout reads the others.
    from stereosr.cli import main

    weights = tmp_path / "w.safetensors"
    torch.manual_seed(0)
    save_model(NAFSSR(NAFSSRConfig(width=8, num_blocks=1, scale=2)), weights)
    out = tmp_path / "out"
    base = ["upscale", "--input-dir", str(flat), "--weights", str(weights), "--device", "cpu"]
    assert main([*base, "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["0001_L.png", "0001_R.png"]
    assert main([*base, "-o", str(tmp_path / "out2"), "--layout", "suffix"]) == 0
    assert len(list((tmp_path / "out2").iterdir())) == 4


def test_missing_view_raise_and_skip(tmp_path: Path) -> None:
    png(tmp_path / "0001_L.png")
    png(tmp_path / "0001_R.png")
    png(tmp_path / "0002_L.png")
    png(tmp_path / "0003_R.png")
    with pytest.raises(InputError) as exc:
        find_pairs(tmp_path)
    msg = str(exc.value)
    assert str(tmp_path / "0002_R.png") in msg and "not found" in msg
    assert "on_error='skip'" in msg and "--skip-bad" not in msg  # the API names its parameter
    assert "\n" not in msg
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = find_pairs(tmp_path, on_error="skip")
    assert [p.name for p in pairs] == ["0001"]
    bad = [w for w in caught if issubclass(w.category, BadPairWarning)]
    assert len(bad) == 2
    assert "0002_R.png" in str(bad[0].message) and "0003_L.png" in str(bad[1].message)
    assert [name for name, _ in pairs.skipped] == ["0002", "0003"]
    assert "0002_R.png: file not found" in pairs.skipped[0][1]


def test_size_mismatch_and_unreadable(tmp_path: Path) -> None:
    png(tmp_path / "a_L.png", 4, 6)
    png(tmp_path / "a_R.png", 4, 7)
    with pytest.raises(InputError, match=r"a_R\.png: is 7x4 but a_L\.png is 6x4"):
        find_pairs(tmp_path)
    (tmp_path / "a_R.png").write_bytes(b"not an image at all")
    with pytest.raises(InputError, match=r"a_R\.png: not an image"):
        find_pairs(tmp_path)
    with pytest.raises(InputError, match="no usable stereo pairs"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        find_pairs(tmp_path, on_error="skip")


def test_lr_views_checked_too(tmp_path: Path) -> None:
    d = tmp_path / "000001"
    png(d / "hr0.png", 8, 12)
    png(d / "hr1.png", 8, 12)
    png(d / "lr0.png", 2, 3)
    with pytest.raises(InputError, match=r"lr1\.png: file not found"):
        find_pairs(tmp_path)


def test_exif_orientation_respected(tmp_path: Path) -> None:
    # a 6x4 (W x H) JPEG stored sideways with orientation 6 is a 4x6 image, like the PNG
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((6, 4, 3), np.uint8)).save(tmp_path / "p_L.jpg", exif=exif)
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "p_R.jpg")
    pairs = find_pairs(tmp_path)
    assert read_image(pairs[0].left).shape == read_image(pairs[0].right).shape == (4, 6, 3)


def test_empty_and_missing_roots(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no stereo pairs found"):
        find_pairs(tmp_path)
    with pytest.raises(InputError, match="folder not found"):
        find_pairs(tmp_path / "nope")
    png(tmp_path / "x_L.png")
    png(tmp_path / "x_R.png")
    with pytest.raises(InputError, match="no stereo pairs found in layout 'middlebury'"):
        find_pairs(tmp_path, layout="middlebury")
    with pytest.raises(InputError, match="unknown layout"):
        find_pairs(tmp_path, layout="flickr")
    assert detect_layout(tmp_path) == "flickr1024"


def test_pfm_big_endian_three_channels(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    with open(tmp_path / "d.pfm", "wb") as fh:
        fh.write(b"PF\n3 2\n1.0\n" + arr[::-1].astype(">f4").tobytes())
    np.testing.assert_array_equal(read_disparity(tmp_path / "d.pfm"), arr[..., 0])
    (tmp_path / "t.pfm").write_bytes(b"Pf\n3 2\n-1.0\n" + struct.pack("<f", 1.0))
    with pytest.raises(InputError, match="truncated"):
        read_disparity(tmp_path / "t.pfm")


def test_floating_point_tiff_disparity(tmp_path: Path) -> None:
    """A float TIFF disparity (a common way to store one) is read in pixels, NaN/inf/<= 0 as
    unknown (inf); 16-bit TIFF follows the KITTI rule like 16-bit PNG; anything else is told
    which formats a disparity map may have."""
    import tifffile

    from stereosr.io import write_image

    d = np.array([[1.5, np.nan, 0.0], [-2.0, np.inf, 37.25]], np.float32)
    tifffile.imwrite(tmp_path / "d.tif", d)
    want = np.where(np.isfinite(d) & (d > 0), d, np.inf).astype(np.float32)
    np.testing.assert_array_equal(read_disparity(tmp_path / "d.tif"), want)
    kitti = np.array([[0, 256, 9536]], np.uint16)
    write_image(tmp_path / "k.tif", kitti)
    np.testing.assert_array_equal(read_disparity(tmp_path / "k.tif"),
                                  np.array([[np.inf, 1.0, 37.25]], np.float32))
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((2, 3, 3), np.float32), photometric="rgb")
    with pytest.raises(InputError, match="must have one channel"):
        read_disparity(tmp_path / "rgb.tif")
    write_image(tmp_path / "e.png", np.zeros((2, 3), np.uint8))
    with pytest.raises(InputError, match="floating-point TIFF or PFM"):
        read_disparity(tmp_path / "e.png")
