"""``stereosr evaluate`` end to end: reports, figure, bad input (exit 2, one line, no files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_models import save_tiny_model

from stereosr.cli import main
from stereosr.evaluate import bicubic_upscale, make_lr
from stereosr.imageops import modcrop


def _write_pair(folder: Path, name: str, left: np.ndarray, right: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(left).save(folder / f"{name}_L.png")
    Image.fromarray(right).save(folder / f"{name}_R.png")


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory,
              motorcycle: tuple[np.ndarray, ...]) -> Path:
    left, right, _ = motorcycle
    root = tmp_path_factory.mktemp("evalset")
    _write_pair(root / "hr", "p1", left[100:196, 150:402], right[100:196, 150:402])
    _write_pair(root / "hr", "p2", left[250:346, 300:502], right[250:346, 300:502])
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("w") / "tiny_x4.safetensors", 1, scale=4,
                           num_blocks=2, std=0.1)


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["evaluate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_bicubic_motorcycle_cli(tmp_path: Path, motorcycle: tuple[np.ndarray, ...],
                                capsys: pytest.CaptureFixture[str]) -> None:
    left, right, _ = motorcycle
    _write_pair(tmp_path / "data", "motorcycle", left, right)
    code, out, _ = _run(["--data", str(tmp_path / "data"), "--bicubic-only", "--protocol",
                         "stereo", "--json", str(tmp_path / "r.json")], capsys)
    assert code == 0
    assert "23.82" in out and "0.7500" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    s = rep["mean"]["bicubic"]["stereo"]
    assert round(s["psnr"], 2) == 23.82 and round(s["ssim"], 4) == 0.7500
    assert rep["meta"]["scale"] == 4 and rep["meta"]["layout"] == "flickr1024"
    assert rep["meta"]["lr"] == "MATLAB bicubic of HR"


def test_model_and_bicubic_reports(tmp_path: Path, small_set: Path, weights: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    j, c, f = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "fig.png"
    code, out, err = _run(["--data", str(small_set / "hr"), "--weights", str(weights),
                           "--device", "cpu", "--json", str(j), "--csv", str(c), "--figure",
                           str(f), "--protocol", "stereo,left", "--protocol", "basicsr"], capsys)
    assert code == 0, err
    rep = json.loads(j.read_text())
    assert rep["methods"] == ["model", "bicubic"] and rep["num_pairs"] == 2
    assert list(rep["protocols"]) == ["stereo", "left", "basicsr-y-crop4"]
    # the bicubic numbers are those of the library path on the same (modcropped) pair
    from stereosr.metrics import score_pair

    img = np.asarray(Image.open(small_set / "hr" / "p2_L.png"))
    imr = np.asarray(Image.open(small_set / "hr" / "p2_R.png"))
    hl, hr = modcrop(img, 4), modcrop(imr, 4)
    ref = score_pair(bicubic_upscale(make_lr(hl, 4), 4), bicubic_upscale(make_lr(hr, 4), 4),
                     hl, hr)
    got = rep["pairs"][1]["scores"]["bicubic"]
    assert rep["pairs"][1]["name"] == "p2"
    assert got["stereo"]["psnr"] == pytest.approx(ref["stereo"]["psnr"], abs=1e-9)
    assert got["left"]["ssim"] == pytest.approx(ref["left"]["ssim"], abs=1e-9)
    lines = c.read_text().splitlines()
    assert lines[0] == "pair,method,protocol,psnr,ssim" and len(lines) == 1 + 3 * 2 * 3
    assert "gain" in out and "basicsr-y-crop4" in out
    fig = Image.open(f)
    assert fig.mode == "RGB" and fig.width > 3 * 2 * 96 and fig.height > 2 * 2 * 96
    # the figure holds the HR crop pixels (zoomed x2, nearest neighbour) of the first pair
    arr = np.asarray(fig)
    assert (arr < 250).any() and (arr == 255).any()


def test_sr_hr_mode(tmp_path: Path, small_set: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sr = tmp_path / "sr"
    for name in ("p1", "p2"):
        views = [np.asarray(Image.open(small_set / "hr" / f"{name}_{s}.png")) for s in "LR"]
        _write_pair(sr, name, *[np.clip(v.astype(int) - 4, 0, 255).astype(np.uint8)
                                for v in views])
    code, out, err = _run(["--sr", str(sr), "--hr", str(small_set / "hr"), "--csv",
                           str(tmp_path / "s.csv"), "--figure", str(tmp_path / "s.png")],
                          capsys)
    assert code == 0, err
    assert "sr" in out and "mean over 2 pairs" in out
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[1].startswith("p1,sr,stereo,") and rows[-1].startswith("mean,sr,left,")
    assert (tmp_path / "s.png").is_file()


def _bad(args: list[str], capsys: pytest.CaptureFixture[str], expect: str,
         tmp_path: Path) -> None:
    report = tmp_path / "bad.json"
    code, _, err = _run([*args, "--json", str(report)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stereosr evaluate: error:"), err
    assert expect in lines[0]
    assert not report.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bad.json")]


def test_bad_input(tmp_path: Path, small_set: Path, weights: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    hr = small_set / "hr"
    # SR of another size than HR (second pair), so nothing is written although p1 scored
    sr = tmp_path / "sr"
    for name, cut in (("p1", 0), ("p2", 4)):
        views = [np.asarray(Image.open(hr / f"{name}_{s}.png")) for s in "LR"]
        _write_pair(sr, name, *[v[:, :v.shape[1] - cut] for v in views])
    _bad(["--sr", str(sr), "--hr", str(hr)], capsys, "pair p2: SR views are 198x96 but HR views "
         "202x96; an SR result must have the HR size, or the HR size cropped to a multiple of "
         "the scale (x2, x3, x4 or x8; give another with --scale N)", tmp_path)
    # missing pairs
    (sr / "p2_L.png").unlink()
    (sr / "p2_R.png").unlink()
    _bad(["--sr", str(sr), "--hr", str(hr)], capsys, "no SR result for HR pair 'p2'", tmp_path)
    # wrong scale: a x4 model with --scale 2
    _bad(["--data", str(hr), "--weights", str(weights), "--scale", "2"], capsys,
         "the model upscales x4 but --scale is 2", tmp_path)
    # empty folders
    empty = tmp_path / "empty"
    empty.mkdir()
    _bad(["--data", str(empty), "--bicubic-only"], capsys, "no stereo pairs found", tmp_path)
    _bad(["--sr", str(empty), "--hr", str(hr)], capsys, "no stereo pairs found", tmp_path)
    _bad(["--data", str(tmp_path / "nope"), "--bicubic-only"], capsys, "folder not found",
         tmp_path)
    # argument mistakes
    _bad(["--sr", str(sr)], capsys, "--sr and --hr go together", tmp_path)
    _bad([], capsys, "nothing to evaluate", tmp_path)
    _bad(["--data", str(hr), "--bicubic-only", "--protocol", "nope"], capsys,
         "unknown protocol 'nope'", tmp_path)
    _bad(["--data", str(hr), "--bicubic-only", "--figure", str(tmp_path / "f.jpg")], capsys,
         "use a .png name", tmp_path)


def test_existing_report_needs_overwrite(tmp_path: Path, small_set: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r.csv"
    report.write_text("keep me")
    args = ["--data", str(small_set / "hr"), "--bicubic-only", "--csv", str(report)]
    code, _, err = _run(args, capsys)
    assert code == 2 and "--overwrite" in err and report.read_text() == "keep me"
    code, _, _ = _run([*args, "--overwrite"], capsys)
    assert code == 0 and report.read_text().startswith("pair,method")


def test_precision_option(tmp_path: Path, small_set: Path, weights: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    reps = {}
    for prec in ("fp32", "bf16"):
        j = tmp_path / f"{prec}.json"
        code, _, err = _run(["--data", str(small_set / "hr"), "--weights", str(weights),
                             "--device", "cpu", "--json", str(j), "--no-bicubic",
                             "--precision", prec], capsys)
        assert code == 0, err
        reps[prec] = json.loads(j.read_text())
    a = reps["fp32"]["pairs"][0]["scores"]["model"]["stereo"]["psnr"]
    b = reps["bf16"]["pairs"][0]["scores"]["model"]["stereo"]["psnr"]
    assert abs(a - b) < 0.05
    assert json.dumps(reps["bf16"]).count('"bf16"') >= 1  # recorded in the report


def test_default_precision_is_fp32_on_every_device(tmp_path: Path, small_set: Path,
                                                    weights: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # The GPU default of upscale (fp16) must not leak into scores: evaluate records fp32 and
    # gives the same PSNR as an explicit --precision fp32.
    reps = []
    for extra in ([], ["--precision", "fp32"]):
        j = tmp_path / f"r{len(reps)}.json"
        code, _, err = _run(["--data", str(small_set / "hr"), "--weights", str(weights),
                             "--device", "cpu", "--json", str(j), "--no-bicubic", *extra], capsys)
        assert code == 0, err
        reps.append(json.loads(j.read_text()))
    assert reps[0]["meta"]["precision"] == "fp32"
    assert reps[0]["pairs"][0]["scores"] == reps[1]["pairs"][0]["scores"]
