"""``stereosr degrade`` end to end, in-process, including every bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from skimage import data

from stereosr.cli import main
from stereosr.degrade import DegradationConfig, degrade_pair, imresize
from stereosr.io import read_image


@pytest.fixture(scope="module")
def views() -> tuple[np.ndarray, np.ndarray]:
    left, right, _ = data.stereo_motorcycle()
    return left[150:217, 250:350], right[150:217, 250:350]  # 67 x 100


@pytest.fixture()
def flickr(tmp_path: Path, views: tuple[np.ndarray, np.ndarray]) -> Path:
    """A Flickr1024-style folder: 0001_L.png / 0001_R.png, 0002_L.png / 0002_R.png."""
    hr = tmp_path / "hr"
    hr.mkdir()
    for i, off in ((1, 0), (2, 7)):
        Image.fromarray(views[0][:, off:off + 90]).save(hr / f"{i:04d}_L.png")
        Image.fromarray(views[1][:, off:off + 90]).save(hr / f"{i:04d}_R.png")
    return hr


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], match: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("stereosr degrade: error:") and "\n" not in err
    assert match in err, err
    return err


def test_bicubic_folder_mirrors_names_and_is_matlab_exact(flickr: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    lr = tmp_path / "lr"
    assert main(["degrade", str(flickr), str(lr), "--scale", "4"]) == 0
    assert "wrote 2 LR pairs" in capsys.readouterr().out
    names = sorted(p.name for p in lr.iterdir())
    assert names == ["0001_L.png", "0001_R.png", "0002_L.png", "0002_R.png", "degradation.yaml"]
    for name in names[:-1]:
        hr_img = read_image(flickr / name)
        out = read_image(lr / name)
        assert out.shape == (16, 22, 3)  # floor(67 / 4) x floor(90 / 4)
        np.testing.assert_array_equal(out, imresize(hr_img[:64, :88], 0.25))
    meta = yaml.safe_load((lr / "degradation.yaml").read_text())
    assert meta["scale"] == 4 and meta["degradation"] == "bicubic"


def test_nested_layout_is_mirrored(tmp_path: Path, views: tuple[np.ndarray, np.ndarray]) -> None:
    hr = tmp_path / "middlebury"
    for scene in ("Motorcycle", "Piano"):
        (hr / scene).mkdir(parents=True)
        Image.fromarray(views[0]).save(hr / scene / "im0.png")
        Image.fromarray(views[1]).save(hr / scene / "im1.png")
    lr = tmp_path / "out" / "lr_x2"
    assert main(["degrade", str(hr), str(lr), "--scale", "2"]) == 0
    for scene in ("Motorcycle", "Piano"):
        out = read_image(lr / scene / "im1.png")
        np.testing.assert_array_equal(out, imresize(views[1][:66], 0.5))


def test_realistic_is_seeded_and_matches_the_api(flickr: Path, tmp_path: Path) -> None:
    cfg_path = tmp_path / "deg.yaml"
    cfg_path.write_text("blur: {prob: 1.0, sigma: [1.0, 2.0]}\n"
                        "gaussian_noise: {prob: 1.0, sigma: [5, 10]}\n"
                        "jpeg: {prob: 1.0, quality: [50, 70]}\n")
    runs = {}
    for tag, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out = tmp_path / tag
        assert main(["degrade", str(flickr), str(out), "--realistic", str(cfg_path),
                     "--seed", seed]) == 0
        runs[tag] = _snapshot(out)
    assert runs["a"] == runs["b"]
    assert runs["a"]["0001_L.png"] != runs["c"]["0001_L.png"]
    # the files are what the API gives with the command's per-pair generator
    from stereosr.commands.degrade import pair_rng

    cfg = DegradationConfig.from_yaml(cfg_path)
    hr_l, hr_r = read_image(flickr / "0002_L.png"), read_image(flickr / "0002_R.png")
    lr_l, lr_r = degrade_pair(hr_l, hr_r, 4, cfg, pair_rng(3, "0002"))
    np.testing.assert_array_equal(read_image(tmp_path / "a" / "0002_L.png"), lr_l)
    np.testing.assert_array_equal(read_image(tmp_path / "a" / "0002_R.png"), lr_r)
    meta = yaml.safe_load((tmp_path / "a" / "degradation.yaml").read_text())
    assert meta["seed"] == 3 and DegradationConfig.from_dict(meta["degradation"]) == cfg


def test_a_pairs_draw_does_not_depend_on_the_other_pairs(flickr: Path, tmp_path: Path) -> None:
    cfg_path = tmp_path / "deg.yaml"
    cfg_path.write_text("gaussian_noise: {prob: 1.0}\n")
    assert main(["degrade", str(flickr), str(tmp_path / "both"), "--realistic", str(cfg_path)]) == 0
    (flickr / "0001_L.png").unlink()
    (flickr / "0001_R.png").unlink()
    assert main(["degrade", str(flickr), str(tmp_path / "one"), "--realistic", str(cfg_path)]) == 0
    assert ((tmp_path / "both" / "0002_L.png").read_bytes()
            == (tmp_path / "one" / "0002_L.png").read_bytes())


def test_overwrite(flickr: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lr = tmp_path / "lr"
    assert main(["degrade", str(flickr), str(lr), "--scale", "2"]) == 0
    before = _snapshot(lr)
    _fails(["degrade", str(flickr), str(lr), "--scale", "4"], capsys, "--overwrite")
    assert _snapshot(lr) == before  # nothing touched
    assert main(["degrade", str(flickr), str(lr), "--scale", "4", "--overwrite"]) == 0
    assert read_image(lr / "0001_L.png").shape == (16, 22, 3)


def test_existing_single_output_blocks_everything(flickr: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    lr = tmp_path / "lr"
    lr.mkdir()
    (lr / "0002_R.png").write_bytes(b"user data")
    _fails(["degrade", str(flickr), str(lr)], capsys, "0002_R.png")
    assert _snapshot(lr) == {"0002_R.png": b"user data"}


@pytest.mark.parametrize("case", ["missing", "empty", "file", "no_pairs"])
def test_bad_hr_dir(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hr = tmp_path / "hr"
    if case == "empty":
        hr.mkdir()
    elif case == "file":
        hr.write_bytes(b"x")
    elif case == "no_pairs":
        hr.mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(hr / "lonely.png")
    lr = tmp_path / "lr"
    _fails(["degrade", str(hr), str(lr)], capsys, str(hr))
    assert not lr.exists()


def test_bad_pair_is_named_or_skipped(flickr: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    (flickr / "0002_R.png").write_bytes(b"not an image")
    lr = tmp_path / "lr"
    _fails(["degrade", str(flickr), str(lr)], capsys, "0002_R.png")
    assert not lr.exists()
    assert main(["degrade", str(flickr), str(lr), "--skip-bad"]) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert len(warned) == 1 and warned[0].startswith("stereosr degrade: warning: skipping pair "
                                                     "'0002'")
    assert sorted(p.name for p in lr.glob("*.png")) == ["0001_L.png", "0001_R.png"]


@pytest.mark.parametrize("case", ["is_file", "under_file", "same_as_hr", "inside_hr"])
def test_bad_lr_dir(case: str, flickr: Path, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"x")
    lr = {"is_file": blocker, "under_file": blocker / "lr", "same_as_hr": flickr,
          "inside_hr": flickr / "lr"}[case]
    hr_before = _snapshot(flickr)
    _fails(["degrade", str(flickr), str(lr), "--overwrite"], capsys, str(lr))
    assert _snapshot(flickr) == hr_before
    assert blocker.read_bytes() == b"x"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write to read-only folders")
def test_unwritable_lr_dir(flickr: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _fails(["degrade", str(flickr), str(locked / "lr")], capsys, "not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("text, match", [
    ("blur: {sigmaa: [1, 2]}\n", "'blur.sigmaa'"),
    ("noise: {prob: 1}\n", "'noise'"),
    ("jpeg: {quality: [0, 200]}\n", "jpeg.quality"),
    ("blur: [\n", "invalid YAML"),
])
def test_bad_config(text: str, match: str, flickr: Path, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "deg.yaml"
    cfg.write_text(text)
    lr = tmp_path / "lr"
    _fails(["degrade", str(flickr), str(lr), "--realistic", str(cfg)], capsys, match)
    assert not lr.exists()


def test_missing_config_and_bad_numbers(flickr: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    lr = tmp_path / "lr"
    _fails(["degrade", str(flickr), str(lr), "--realistic", str(tmp_path / "nope.yaml")],
           capsys, "nope.yaml")
    _fails(["degrade", str(flickr), str(lr), "--scale", "0"], capsys, "--scale")
    _fails(["degrade", str(flickr), str(lr), "--seed", "-1"], capsys, "--seed")
    _fails(["degrade", str(flickr), str(lr), "--scale", "100"], capsys, "smaller than the scale")
    assert not lr.exists()


def test_a_too_small_later_pair_fails_before_any_write(flickr: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    tiny = np.zeros((3, 40, 3), np.uint8)
    Image.fromarray(tiny).save(flickr / "0009_L.png")
    Image.fromarray(tiny).save(flickr / "0009_R.png")
    lr = tmp_path / "lr"
    _fails(["degrade", str(flickr), str(lr), "--scale", "4"], capsys, "0009_L.png")
    assert not lr.exists()
