"""Folder workflows end to end: every layout round-trips through degrade -> upscale -> evaluate,
LR views of mixed HR/LR layouts are what gets upscaled, bad pairs are skipped when asked, an
interrupted run can be finished, and concurrent runs never replace each other's files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import save_tiny_model

from stereosr.cli import main
from stereosr.infer import upscale
from stereosr.io import read_image
from stereosr.models.checkpoint import load_model

#: x2, scored without the left protocol's 64-column crop (the test images are small)
SCORE = ("--scale", "2", "--protocol", "stereo")
SRC = str(Path(__file__).resolve().parents[1] / "src")




@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("w") / "tiny.safetensors", 11)


def _png(path: Path, seed: int, hw: tuple[int, int] = (16, 24), mode: str = "RGB") -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = hw + ((3,) if mode == "RGB" else ())
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return arr


#: layout -> the (left, right) files of one pair, relative to the data set folder
LAYOUT_FILES = {
    "official_test": [("hr/0001/hr0.png", "hr/0001/hr1.png"), ("hr/0002/hr0.png",
                                                               "hr/0002/hr1.png")],
    "patches": [("000001/hr0.png", "000001/hr1.png"), ("000002/hr0.png", "000002/hr1.png")],
    "kitti": [("image_2/000000_10.png", "image_3/000000_10.png"),
              ("image_2/000001_10.png", "image_3/000001_10.png")],
    "subfolders": [("left/a.png", "right/a.png"), ("left/b.png", "right/b.png")],
    "flickr1024": [("0001_L.png", "0001_R.png"), ("0002_L.png", "0002_R.png")],
    "suffix": [("x_left.png", "x_right.png"), ("y_left.png", "y_right.png")],
    "middlebury": [("Adirondack/im0.png", "Adirondack/im1.png"),
                   ("Jadeplant/im0.png", "Jadeplant/im1.png")],
    "folders": [("s1/view1.png", "s1/view5.png"), ("s2/view1.png", "s2/view5.png")],
}


def _layout(root: Path, layout: str, hw: tuple[int, int] = (16, 24)) -> list[tuple[str, str]]:
    files = LAYOUT_FILES[layout]
    for i, (lf, rf) in enumerate(files):
        _png(root / lf, 2 * i, hw)
        _png(root / rf, 2 * i + 1, hw)
    return files


def _flickr(root: Path, n: int, hw: tuple[int, int]) -> None:
    """``n`` random pairs ``0001_L.png``/``0001_R.png``, ... of (H, W) = ``hw``."""
    for i in range(1, n + 1):
        _png(root / f"{i:04d}_L.png", 2 * i, hw)
        _png(root / f"{i:04d}_R.png", 2 * i + 1, hw)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def test_every_documented_layout_is_listed():
    from stereosr.data.pairs import LAYOUTS

    assert set(LAYOUT_FILES) == set(LAYOUTS)
    doc = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text()
    for name in LAYOUTS:
        assert f"| `{name}` |" in doc


@pytest.mark.parametrize("hw", [(16, 24), (17, 27)], ids=["even", "odd"])
@pytest.mark.parametrize("layout", list(LAYOUT_FILES))
def test_degrade_upscale_evaluate_round_trip(layout: str, hw: tuple[int, int], tmp_path: Path,
                                             weights: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # HR of an odd size (not a multiple of the scale) gives SR of the HR size rounded down:
    # evaluate crops the HR views to it, as evaluating a data set does.
    hr, lr, sr = tmp_path / "hr", tmp_path / "lr", tmp_path / "sr"
    files = _layout(hr, layout, hw)
    h, w = hw[0] // 2 * 2, hw[1] // 2 * 2
    assert main(["degrade", str(hr), str(lr), "--scale", "2"]) == 0
    assert main(["upscale", "--input-dir", str(lr), "-o", str(sr), "--weights", str(weights),
                 "--device", "cpu", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["pairs"] == 2 and summary["skipped"] == []
    # Outputs mirror the input layout: the same relative paths and names, nothing else.
    written = sorted(str(p.relative_to(sr)) for p in sr.rglob("*.png"))
    assert written == sorted(f for pair in files for f in pair)
    model = load_model(weights, device="cpu")
    for lf, rf in files:
        ref_l, ref_r = upscale(read_image(lr / lf), read_image(lr / rf), model)
        assert np.array_equal(read_image(sr / lf), ref_l)
        assert np.array_equal(read_image(sr / rf), ref_r)
    report = tmp_path / "scores.json"
    assert main(["evaluate", "--sr", str(sr), "--hr", str(hr), *SCORE,
                 "--json", str(report)]) == 0
    scores = json.loads(report.read_text())
    assert scores["num_pairs"] == 2 and scores["skipped"] == []
    assert scores["meta"].get("hr_modcropped", 0) == (0 if (h, w) == hw else 2)
    by_name = {p["name"]: p["scores"]["sr"]["stereo"]["psnr"] for p in scores["pairs"]}
    for lf, rf in files:
        assert read_image(sr / lf).shape[:2] == (h, w)
        expect = (_psnr(read_image(sr / lf), read_image(hr / lf)[:h, :w])
                  + _psnr(read_image(sr / rf), read_image(hr / rf)[:h, :w])) / 2
        assert any(abs(v - expect) < 1e-9 for v in by_name.values()), (by_name, expect)


def _official_with_lr(root: Path, lr_folder: str = "lr_x2") -> None:
    for scene in ("0001", "0002"):
        for v in "01":
            _png(root / "hr" / scene / f"hr{v}.png", int(scene) * 2 + int(v), (16, 24))
            _png(root / lr_folder / scene / f"lr{v}.png", 10 + int(scene) * 2 + int(v), (8, 12))


def test_official_layout_upscales_lr_views_to_hr_places(tmp_path: Path, weights: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    data, sr = tmp_path / "data", tmp_path / "sr"
    _official_with_lr(data)
    assert main(["upscale", "--input-dir", str(data), "-o", str(sr), "--weights", str(weights),
                 "--device", "cpu"]) == 0
    model = load_model(weights, device="cpu")
    assert sorted(str(p.relative_to(sr)) for p in sr.rglob("*.png")) == [
        "hr/0001/hr0.png", "hr/0001/hr1.png", "hr/0002/hr0.png", "hr/0002/hr1.png"]
    for scene in ("0001", "0002"):
        ref_l, ref_r = upscale(read_image(data / "lr_x2" / scene / "lr0.png"),
                               read_image(data / "lr_x2" / scene / "lr1.png"), model)
        out_l = read_image(sr / "hr" / scene / "hr0.png")
        assert out_l.shape == read_image(data / "hr" / scene / "hr0.png").shape  # HR size
        assert np.array_equal(out_l, ref_l)
        assert np.array_equal(read_image(sr / "hr" / scene / "hr1.png"), ref_r)
    capsys.readouterr()
    # Ready to score against the data set as it is.
    assert main(["evaluate", "--sr", str(sr), "--hr", str(data), *SCORE]) == 0
    assert "mean over 2 pairs" in capsys.readouterr().out


def test_scene_without_lr_views_is_named_as_such(tmp_path: Path, weights: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    _official_with_lr(data)
    for v in "01":
        _png(data / "hr" / "0003" / f"hr{v}.png", 30 + int(v), (16, 24))  # no lr_x2/0003/
    (data / "lr_x2" / "0002" / "lr1.png").unlink()
    lr = data / "lr_x2"
    assert main(["upscale", "--input-dir", str(data), "-o", str(tmp_path / "sr"),
                 "--weights", str(weights), "--device", "cpu", "--skip-bad", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped"] == [
        {"pair": "0002", "reason": f"{lr / '0002' / 'lr1.png'}: file not found (the other view "
                                   "of the pair exists)"},
        {"pair": "0003", "reason": f"{lr / '0003' / 'lr0.png'}, {lr / '0003' / 'lr1.png'}: "
                                   "files not found (the pair's LR views are missing)"}]


def test_official_layout_with_lr_of_another_scale_is_refused(tmp_path: Path, weights: Path,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    data, sr = tmp_path / "data", tmp_path / "sr"
    _official_with_lr(data, "lr_x3")
    rc = main(["upscale", "--input-dir", str(data), "-o", str(sr), "--weights", str(weights),
               "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "lr_x3" in err and "x2" in err
    assert not list(sr.rglob("*.png"))


def test_make_patches_output_upscales_lr_patches(tmp_path: Path, weights: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    hr, patches, sr = tmp_path / "hr", tmp_path / "patches", tmp_path / "sr"
    _png(hr / "0001_L.png", 1, (24, 32))
    _png(hr / "0001_R.png", 2, (24, 32))
    assert main(["make-patches", str(hr), str(patches), "--scale", "2", "--lr-size", "6x8",
                 "--stride", "6"]) == 0
    n = len(list(patches.iterdir()))
    assert n == 2 * 2  # rows 0, 6 x columns 0, 6 of the 12x16 LR image
    assert main(["upscale", "--input-dir", str(patches), "-o", str(sr), "--weights",
                 str(weights), "--device", "cpu"]) == 0
    model = load_model(weights, device="cpu")
    for d in sorted(patches.iterdir()):
        ref_l, ref_r = upscale(read_image(d / "lr0.png"), read_image(d / "lr1.png"), model)
        assert np.array_equal(read_image(sr / d.name / "hr0.png"), ref_l)
        assert np.array_equal(read_image(sr / d.name / "hr1.png"), ref_r)
        assert ref_l.shape == read_image(d / "hr0.png").shape
    assert sorted(p.name for p in (sr / "000001").iterdir()) == ["hr0.png", "hr1.png"]
    capsys.readouterr()
    assert main(["evaluate", "--sr", str(sr), "--hr", str(patches), *SCORE]) == 0
    assert f"mean over {n} pairs" in capsys.readouterr().out
    # A patch folder without LR views among ones with them: its HR views are not upscaled.
    (patches / "000002" / "lr0.png").unlink()
    (patches / "000002" / "lr1.png").unlink()
    base = ["upscale", "--input-dir", str(patches), "-o", str(tmp_path / "sr2"), "--weights",
            str(weights), "--device", "cpu"]
    assert main(base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stereosr upscale: error: pair 000002: ")
    assert "no LR views (lr0/lr1) beside hr0.png, while 3 other pair(s)" in err[0]
    assert not (tmp_path / "sr2" / "000001").exists()
    assert main([*base, "--skip-bad", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["pairs"] == 3 and [s["pair"] for s in summary["skipped"]] == ["000002"]
    assert not (tmp_path / "sr2" / "000002").exists()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # the header stays valid


def test_skip_bad_skips_decode_failures_and_mismatched_pairs(tmp_path: Path, weights: Path,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    data, sr = tmp_path / "data", tmp_path / "sr"
    _flickr(data, 4, (16, 24))
    _truncate(data / "0002_R.png")
    _png(data / "0003_R.png", 7, (16, 20))  # the views differ in size
    base = ["upscale", "--input-dir", str(data), "-o", str(sr), "--weights", str(weights),
            "--device", "cpu"]
    assert main(base) == 2
    capsys.readouterr()
    assert main([*base, "--skip-bad", "--json", "--overwrite"]) == 0
    cap = capsys.readouterr()
    summary = json.loads(cap.out.strip().splitlines()[-1])
    assert summary["pairs"] == 2
    assert sorted(s["pair"] for s in summary["skipped"]) == ["0002", "0003"]
    warned = [ln for ln in cap.err.splitlines() if ": warning: " in ln]
    assert len(warned) == 2 and any("0002_R.png" in w for w in warned)
    assert sorted(p.name for p in sr.iterdir()) == ["0001_L.png", "0001_R.png", "0004_L.png",
                                                    "0004_R.png"]
    # evaluate --skip-bad: a truncated SR view and an SR view of the wrong size are skipped.
    hr = tmp_path / "hr"
    for i in (1, 2, 4):
        for side in "LR":
            _png(hr / f"{i:04d}_{side}.png", 20 + i, (32, 48))
    (sr / "0002_L.png").write_bytes((sr / "0001_L.png").read_bytes())
    (sr / "0002_R.png").write_bytes((sr / "0001_R.png").read_bytes())
    _truncate(sr / "0002_L.png")
    _png(sr / "0004_R.png", 3, (30, 48))
    assert main(["evaluate", "--sr", str(sr), "--hr", str(hr), *SCORE]) == 2
    capsys.readouterr()
    report = tmp_path / "r.json"
    assert main(["evaluate", "--sr", str(sr), "--hr", str(hr), *SCORE, "--skip-bad",
                 "--json", str(report)]) == 0
    cap = capsys.readouterr()
    scores = json.loads(report.read_text())
    assert scores["num_pairs"] == 1 and [p["name"] for p in scores["pairs"]] == ["0001"]
    assert sorted(s["name"] for s in scores["skipped"]) == ["0002", "0004"]
    assert "skipped 2 bad pair(s): 0002, 0004" in cap.out


def test_evaluate_skip_bad_leaves_out_pairs_the_upscaling_run_skipped(
        tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # upscale --skip-bad -> evaluate --skip-bad: a pair with no SR result is skipped and listed.
    hr, lr, sr = tmp_path / "hr", tmp_path / "lr", tmp_path / "sr"
    _flickr(hr, 3, (16, 24))
    assert main(["degrade", str(hr), str(lr), "--scale", "2"]) == 0
    _truncate(lr / "0002_L.png")
    assert main(["upscale", "--input-dir", str(lr), "-o", str(sr), "--weights", str(weights),
                 "--device", "cpu", "--skip-bad"]) == 0
    assert not (sr / "0002_L.png").exists()
    capsys.readouterr()
    assert main(["evaluate", "--sr", str(sr), "--hr", str(hr), *SCORE]) == 2
    err = capsys.readouterr().err
    assert "no SR result for HR pair '0002'" in err and "--skip-bad" in err
    report = tmp_path / "r.json"
    assert main(["evaluate", "--sr", str(sr), "--hr", str(hr), *SCORE, "--skip-bad",
                 "--json", str(report)]) == 0
    cap = capsys.readouterr()
    scores = json.loads(report.read_text())
    assert [p["name"] for p in scores["pairs"]] == ["0001", "0003"]
    assert [s["name"] for s in scores["skipped"]] == ["0002"]
    assert "no SR result" in scores["skipped"][0]["reason"]
    assert "skipping pair '0002'" in cap.err
    # Nothing matched at all stays an error, even with --skip-bad.
    other = tmp_path / "other"
    _flickr(other, 1, (16, 24))
    (other / "0001_L.png").rename(other / "0009_L.png")
    (other / "0001_R.png").rename(other / "0009_R.png")
    assert main(["evaluate", "--sr", str(other), "--hr", str(hr), *SCORE, "--skip-bad"]) == 2


def test_sr_size_neither_hr_nor_its_modcrop_is_refused(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    hr, sr = tmp_path / "hr", tmp_path / "sr"
    _flickr(hr, 1, (17, 27))
    for side in "LR":
        _png(sr / f"0001_{side}.png", 3, (16, 24))  # 27 -> 24 is no x2 modcrop
    assert main(["evaluate", "--sr", str(sr), "--hr", str(hr), *SCORE]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("SR views are 24x16 but HR views 27x17; an SR result must have the HR "
                        "size, or the HR size cropped to a multiple of the scale (x2)")
    # Without --scale the usual scales are tried: 27x17 -> 24x16 is the x4 (and x8) modcrop.
    assert main(["evaluate", "--sr", str(sr), "--hr", str(hr), "--protocol", "stereo"]) == 0


def test_a_pair_failing_mid_run_says_how_to_go_on(tmp_path: Path, weights: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data, sr = tmp_path / "data", tmp_path / "sr"
    _flickr(data, 3, (16, 24))
    _truncate(data / "0002_R.png")  # found when decoded, after pair 0001 was written
    base = ["upscale", "--input-dir", str(data), "-o", str(sr), "--weights", str(weights),
            "--device", "cpu"]
    assert main(base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0002_R.png" in err[0]
    assert err[0].endswith("; pass --skip-bad to leave out bad pairs; the 1 pair(s) written "
                           "before it stay (add --skip-existing to keep them)")
    # What the message says finishes the run.
    assert main([*base, "--skip-bad", "--skip-existing", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["kept_existing"] == ["0001"] and summary["pairs"] == 1
    assert [s["pair"] for s in summary["skipped"]] == ["0002"]


def test_skip_bad_in_degrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, lr = tmp_path / "data", tmp_path / "lr"
    _flickr(data, 3, (16, 24))
    _truncate(data / "0002_L.png")
    assert main(["degrade", str(data), str(lr), "--scale", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0002_L.png" in err[0]
    assert err[0].endswith("; pass --skip-bad to leave out bad pairs (and --overwrite for the "
                           "1 pair(s) written before it)")
    from stereosr.files import temp_file_beside

    fd, stale = temp_file_beside(lr / "0003_L.png")  # a run killed while writing leaves it
    os.close(fd)
    assert main(["degrade", str(data), str(lr), "--scale", "2", "--skip-bad",
                 "--overwrite"]) == 0
    assert not os.path.exists(stale)
    cap = capsys.readouterr()
    assert "skipped 1 bad pair(s): 0002" in cap.out
    assert sum(": warning: " in ln for ln in cap.err.splitlines()) == 1
    assert sorted(p.name for p in lr.glob("*.png")) == ["0001_L.png", "0001_R.png",
                                                       "0003_L.png", "0003_R.png"]


def test_skip_bad_in_make_patches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, out = tmp_path / "data", tmp_path / "patches"
    _flickr(data, 3, (12, 16))
    _truncate(data / "0002_R.png")
    args = ["make-patches", str(data), str(out), "--scale", "2", "--lr-size", "6x8"]
    assert main(args) == 2
    capsys.readouterr()
    assert main([*args, "--skip-bad", "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "warning: skipping pair '0002'" in err and "skipped 1 bad pair(s): 0002" in err
    # One 6x8 LR patch per good pair, numbered on: the bad pair takes no number.
    assert sorted(p.name for p in out.iterdir()) == ["000001", "000002"]
    np.testing.assert_array_equal(read_image(out / "000002" / "hr0.png"),
                                  read_image(data / "0003_L.png"))


def test_skip_bad_in_evaluate_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    _flickr(data, 3, (16, 24))
    _truncate(data / "0003_L.png")
    report = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(data), "--bicubic-only", *SCORE]) == 2
    assert main(["evaluate", "--data", str(data), "--bicubic-only", *SCORE,
                 "--skip-bad", "--json", str(report)]) == 0
    scores = json.loads(report.read_text())
    assert scores["num_pairs"] == 2 and [s["name"] for s in scores["skipped"]] == ["0003"]


def test_mixed_channels_pair_is_upscaled_and_said(tmp_path: Path, weights: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    grey = _png(tmp_path / "p_L.png", 1, (8, 12), mode="L")
    rgb = _png(tmp_path / "p_R.png", 2, (8, 12))
    out = tmp_path / "out"
    assert main(["upscale", str(tmp_path / "p_L.png"), str(tmp_path / "p_R.png"), "-o",
                 str(out), "--weights", str(weights), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "8-bit grey" in err and "8-bit RGB" in err and "differ in size" not in err
    # Reference: the grey view run as RGB (repeated), the result averaged back to grey.
    model = load_model(weights, device="cpu")
    t = [torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)[None]
         for a in (np.repeat(grey[..., None], 3, axis=2), rgb)]
    with torch.inference_mode():
        sr_l, sr_r = model(*t)
    ref_l = np.clip(np.round(sr_l[0].clamp(0, 1).mean(0).numpy() * 255), 0, 255)
    ref_r = np.clip(np.round(sr_r[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255), 0, 255)
    got_l, got_r = read_image(out / "p_L.png"), read_image(out / "p_R.png")
    assert got_l.shape == (16, 24, 1) and got_r.shape == (16, 24, 3)
    assert np.abs(got_l[..., 0].astype(int) - ref_l).max() <= 1
    assert np.abs(got_r.astype(int) - ref_r).max() <= 1


def test_skip_existing_finishes_a_run_and_stale_temps_go(tmp_path: Path, weights: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    import fcntl

    data, sr = tmp_path / "data", tmp_path / "sr"
    for i in range(1, 4):
        _png(data / "left" / f"{i}.png", 2 * i)
        _png(data / "right" / f"{i}.png", 2 * i + 1)
    base = ["upscale", "--input-dir", str(data), "-o", str(sr), "--weights", str(weights),
            "--device", "cpu"]
    assert main(base) == 0
    kept = {p: os.stat(p).st_ino for p in sr.rglob("*.png")}
    (sr / "left" / "2.png").unlink()
    (sr / "right" / "2.png").unlink()
    stale = sr / "left" / ".2.png.stereosr-k1ll3d_x.tmp"
    stale.write_bytes(b"half")

    live = sr / "right" / ".2.png.stereosr-st1ll_wr.tmp"
    live.write_bytes(b"in use")
    capsys.readouterr()
    with open(live, "rb") as fh:  # a live writer holds its temporary file locked
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        assert main(base) == 2  # finished outputs exist
        err = capsys.readouterr().err
        assert "already exist" in err and "pass --skip-existing" in err
        assert main([*base, "--skip-existing", "--json"]) == 0
        assert live.exists()
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["pairs"] == 1 and sorted(summary["kept_existing"]) == ["1", "3"]
    assert not stale.exists()
    for p, ino in kept.items():
        if p.name != "2.png":
            assert os.stat(p).st_ino == ino  # untouched
    model = load_model(weights, device="cpu")
    ref_l, _ = upscale(read_image(data / "left/2.png"), read_image(data / "right/2.png"), model)
    assert np.array_equal(read_image(sr / "left/2.png"), ref_l)
    # Half a pair is never taken for finished: it is done again, the lone output replaced.
    (sr / "right" / "3.png").unlink()
    (sr / "left" / "3.png").write_bytes((sr / "left" / "1.png").read_bytes())
    capsys.readouterr()
    assert main([*base, "--skip-existing", "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out.strip().splitlines()[-1])["pairs"] == 1
    assert "left/3.png exists without the pair's other output" in cap.err
    ref_l, ref_r = upscale(read_image(data / "left/3.png"), read_image(data / "right/3.png"),
                           model)
    assert np.array_equal(read_image(sr / "left/3.png"), ref_l)
    assert np.array_equal(read_image(sr / "right/3.png"), ref_r)
    assert main([*base, "--skip-existing", "--overwrite"]) == 2


def test_outputs_never_replace_inputs_even_through_links(tmp_path: Path, weights: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    data = tmp_path / "data"
    _flickr(data, 2, (16, 24))
    kitti = tmp_path / "kitti"
    _layout(kitti, "kitti")
    before = {p: p.read_bytes() for root in (data, kitti) for p in root.rglob("*.png")}
    (tmp_path / "link").symlink_to(data, target_is_directory=True)
    lr = tmp_path / "lr"
    lr.mkdir()
    (lr / "image_2").symlink_to(kitti / "image_2", target_is_directory=True)
    w = ["--weights", str(weights), "--device", "cpu", "--overwrite"]
    runs = [
        # -o a link to the input folder: the outputs' names are the inputs'
        ["upscale", "--input-dir", str(data), "-o", str(tmp_path / "link"), *w],
        # one pair, written into its own folder under its own names
        ["upscale", str(data / "0001_L.png"), str(data / "0001_R.png"), "-o", str(data), *w],
        ["upscale", str(data / "0001_L.png"), str(data / "0001_R.png"), "-o",
         str(tmp_path / "link"), *w],
        # LR_DIR/image_2 links into HR_DIR/image_2
        ["degrade", str(kitti), str(lr), "--scale", "2", "--overwrite"],
    ]
    for args in runs:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert "would replace an input image" in err[0] or "would overwrite an HR input" in err[0]
    for p, data_before in before.items():
        assert p.read_bytes() == data_before, p


def test_skip_existing_cleans_the_folders_of_finished_pairs(tmp_path: Path, weights: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    from stereosr.files import temp_file_beside

    data, sr = tmp_path / "data", tmp_path / "sr"
    files = _layout(data, "middlebury")  # one output folder per pair
    base = ["upscale", "--input-dir", str(data), "-o", str(sr), "--weights", str(weights),
            "--device", "cpu"]
    assert main(base) == 0
    for f in files[1]:
        (sr / f).unlink()
    # Killed after publishing the first pair, before removing its temporary file.
    fd, stale = temp_file_beside(sr / files[0][0])
    os.close(fd)
    capsys.readouterr()
    assert main([*base, "--skip-existing"]) == 0
    assert "removed 1 temporary file(s)" in capsys.readouterr().err
    assert not os.path.exists(stale)


def test_stale_temp_cleanup_keeps_users_hidden_files(tmp_path: Path, weights: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from stereosr.files import temp_file_beside

    data, sr = tmp_path / "data", tmp_path / "sr"
    _flickr(data, 1, (16, 24))
    sr.mkdir()
    mine = [sr / ".notes.tmp", sr / ".my draft.old.tmp", sr / ".0001_L.png.abc12345.tmp",
            sr / ".cache.x.partial"]
    for p in mine[:3]:
        p.write_bytes(b"the user's")
    mine[3].mkdir()
    fd, stale = temp_file_beside(sr / "0001_L.png")  # what a run killed while writing leaves
    os.write(fd, b"half")
    os.close(fd)
    assert main(["upscale", "--input-dir", str(data), "-o", str(sr), "--weights", str(weights),
                 "--device", "cpu"]) == 0
    assert "removed 1 temporary file(s)" in capsys.readouterr().err
    assert not os.path.exists(stale)
    for p in mine:
        assert p.exists(), p
    assert (sr / ".notes.tmp").read_bytes() == b"the user's"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stereosr", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}


def _many_pairs(root: Path, n: int, hw: tuple[int, int]) -> None:
    for i in range(n):
        _png(root / f"{i:03d}_L.png", 2 * i, hw)
        _png(root / f"{i:03d}_R.png", 2 * i + 1, hw)


def _wait_for_output(folder: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not list(folder.glob("*.png")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_leaves_whole_pairs_and_can_be_finished(sig: int, tmp_path: Path,
                                                           weights: Path) -> None:
    data, sr = tmp_path / "data", tmp_path / "sr"
    _many_pairs(data, 24, (40, 56))
    args = ["upscale", "--input-dir", str(data), "-o", str(sr), "--weights", str(weights),
            "--device", "cpu"]
    proc = subprocess.Popen(_cli(*args), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    _wait_for_output(sr, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and err.decode().strip().endswith("terminated")
        assert not list(sr.glob(".*.tmp"))  # handled like Ctrl-C: temporaries removed
    else:
        assert proc.returncode == -signal.SIGKILL
    names = {p.name for p in sr.glob("*.png")}
    assert 0 < len(names) < 48
    whole = {n[:-6] for n in names if n.endswith("_L.png") and n[:-6] + "_R.png" in names}
    done = subprocess.run(_cli(*args, "--skip-existing", "--json"), env=_env(),
                          capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert not list(sr.glob(".*.tmp"))
    summary = json.loads(done.stdout.decode().strip().splitlines()[-1])
    # Pairs the killed run finished are kept, the rest (a half pair included) are done.
    assert sorted(summary["kept_existing"]) == sorted(whole)
    assert len(summary["kept_existing"]) + summary["pairs"] == 24
    model = load_model(weights, device="cpu")
    for i in (0, 23):
        ref_l, ref_r = upscale(read_image(data / f"{i:03d}_L.png"),
                               read_image(data / f"{i:03d}_R.png"), model)
        assert np.array_equal(read_image(sr / f"{i:03d}_L.png"), ref_l)
        assert np.array_equal(read_image(sr / f"{i:03d}_R.png"), ref_r)


def test_two_concurrent_runs_never_replace_each_others_files(tmp_path: Path,
                                                             weights: Path) -> None:
    data, sr = tmp_path / "data", tmp_path / "sr"
    _many_pairs(data, 16, (24, 32))
    other = save_tiny_model(tmp_path / "other.safetensors", 12)
    runs = [subprocess.Popen(_cli("upscale", "--input-dir", str(data), "-o", str(sr),
                                  "--weights", str(w), "--device", "cpu", "--json"),
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for w in (weights, other)]
    results = [(p.wait(timeout=300), *(s.decode() for s in p.communicate())) for p in runs]
    codes = sorted(rc for rc, _, _ in results)
    assert codes in ([0, 2], [2, 2]), results
    for rc, _, err in results:
        if rc == 2:  # the loser says so in one line and keeps the other run's files
            lines = err.strip().splitlines()
            assert len(lines) == 1
            assert "appeared while this run was working (another run writing into the same " \
                "folder?); kept it" in lines[0] or "already exist" in lines[0]
            assert "pass --skip-existing" in lines[0]
    # Every output pair is whole and comes from one model: nothing was replaced half-way.
    models = [load_model(w, device="cpu") for w in (weights, other)]
    for i in range(16):
        lp, rp = sr / f"{i:03d}_L.png", sr / f"{i:03d}_R.png"
        assert lp.exists() == rp.exists()
        if not lp.exists():
            continue
        got = (read_image(lp), read_image(rp))
        refs = [upscale(read_image(data / lp.name), read_image(data / rp.name), m)
                for m in models]
        assert any(np.array_equal(got[0], r[0]) and np.array_equal(got[1], r[1])
                   for r in refs)
    winner = [json.loads(out.strip().splitlines()[-1]) for rc, out, _ in results if rc == 0]
    for summary in winner:  # the run that succeeded finds all of its files as it wrote them
        assert summary["pairs"] == 16
        m = models[[rc for rc, _, _ in results].index(0)]
        for path in summary["outputs"][:4]:
            p = Path(path)
            side = p.stem[-1]
            pair = (read_image(data / f"{p.stem[:-2]}_L.png"),
                    read_image(data / f"{p.stem[:-2]}_R.png"))
            ref = upscale(*pair, m)[0 if side == "L" else 1]
            assert np.array_equal(read_image(p), ref)
    assert not list(sr.glob(".*.tmp"))


def test_a_file_appearing_during_the_write_is_kept(tmp_path: Path, monkeypatch) -> None:
    from stereosr import files
    from stereosr.errors import OutputExistsError

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    real = files.os.fsync
    calls = {"n": 0}

    def other_run_writes_b(fd: int) -> None:  # after our checks, before we publish
        calls["n"] += 1
        if calls["n"] == 2:
            b.write_bytes(b"other run")
        real(fd)

    monkeypatch.setattr(files.os, "fsync", other_run_writes_b)
    with pytest.raises(OutputExistsError, match="b.png: appeared while this run was working"):
        files.commit_files([(a, b"ours"), (b, b"ours")])
    assert b.read_bytes() == b"other run" and not a.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png"]


def test_output_appearing_after_the_check_is_named_as_such(
        tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Another run writes pair 0002's left output after this run checked the folder.
    import importlib

    # The module (stereosr.infer exports a function of the same name).
    infer_upscale = importlib.import_module("stereosr.infer.upscale")
    data, sr = tmp_path / "data", tmp_path / "sr"
    _flickr(data, 3, (16, 24))
    real = infer_upscale.upscale
    calls = {"n": 0}

    def other_run_meanwhile(*a: object, **k: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            (sr / "0002_L.png").write_bytes(b"theirs")
        return real(*a, **k)

    monkeypatch.setattr(infer_upscale, "upscale", other_run_meanwhile)
    base = ["upscale", "--input-dir", str(data), "-o", str(sr), "--weights", str(weights),
            "--device", "cpu"]
    assert main(base) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0] == (f"stereosr upscale: error: {sr / '0002_L.png'}: appeared while this run "
                        "was working (another run writing into the same folder?); kept it; "
                        "pass --overwrite to replace; the 1 pair(s) this run finished stay; to "
                        "finish the rest without replacing anything, pass --skip-existing")
    assert (sr / "0002_L.png").read_bytes() == b"theirs"
    assert sorted(p.name for p in sr.iterdir()) == ["0001_L.png", "0001_R.png", "0002_L.png"]
    # With --skip-existing a pair finished meanwhile by the other run is kept and said.
    for p in sr.iterdir():
        p.unlink()
    calls["n"] = 0
    assert main([*base, "--skip-existing", "--json"]) == 0
    cap = capsys.readouterr()
    assert "pair '0002': finished meanwhile by another run writing into" in cap.err
    summary = json.loads(cap.out.strip().splitlines()[-1])
    assert summary["kept_existing"] == ["0002"] and summary["pairs"] == 2
    assert (sr / "0002_L.png").read_bytes() == b"theirs" and not (sr / "0002_R.png").exists()


def test_disk_full_gives_one_line_and_no_partial_file(tmp_path: Path, weights: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(full)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        data = tmp_path / "data"
        _many_pairs(data, 3, (64, 64))  # each SR view: 128x128 random RGB, ~49 KB as PNG
        proc = subprocess.run(_cli("upscale", "--input-dir", str(data), "-o", str(full),
                                   "--weights", str(weights), "--device", "cpu"),
                              env=_env(), capture_output=True, timeout=300, check=False)
        err = proc.stderr.decode().strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1, proc.stderr
        assert "no space left on the device" in err[0]
        assert list(full.iterdir()) == []  # no partial file, no half pair, no temporary
        # make-patches: the message names the patch folder, not its hidden partial folder.
        proc = subprocess.run(_cli("make-patches", str(data), str(full / "p"), "--scale", "2",
                                   "--lr-size", "16x16", "--stride", "4"),
                              env=_env(), capture_output=True, timeout=300, check=False)
        err = proc.stderr.decode().strip().splitlines()
        assert proc.returncode == 2 and "no space left on the device" in err[-1], proc.stderr
        assert ".partial" not in err[-1] and f"{full / 'p'}/0000" in err[-1]
        assert not [p for p in (full / "p").iterdir() if p.name.startswith(".")]
    finally:
        subprocess.run(["umount", str(full)], check=False)


def test_patch_folders_publish_exclusively_and_partials_are_cleaned(tmp_path: Path,
                                                                    capsys) -> None:
    from stereosr import files
    from stereosr.errors import OutputExistsError

    final = tmp_path / "000001"
    with pytest.raises(OutputExistsError, match="000001: appeared while"), \
            files.staged_folder(final) as tmp:
        (tmp / "hr0.png").write_bytes(b"ours")
        final.mkdir()  # another run publishes the same patch meanwhile
        (final / "hr0.png").write_bytes(b"theirs")
    assert (final / "hr0.png").read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000001"]
    # A killed make-patches run leaves a partial folder: the next run removes it.
    hr, out = tmp_path / "hr", tmp_path / "patches"
    _png(hr / "0001_L.png", 1, (24, 32))
    _png(hr / "0001_R.png", 2, (24, 32))
    stale = out / ".000003.stereosr-k1ll3d00.partial"
    stale.mkdir(parents=True)
    (stale / "hr0.png").write_bytes(b"half")
    assert main(["make-patches", str(hr), str(out), "--scale", "2", "--lr-size", "6x8",
                 "--stride", "6"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["000001", "000002", "000003", "000004"]
