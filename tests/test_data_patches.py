"""make_patches / stereosr make-patches: the official 30x90 LR patch folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stereosr.cli import main
from stereosr.data.pairs import find_pairs
from stereosr.data.patches import count_patches, make_patches, patch_positions
from stereosr.degrade.bicubic import imresize
from stereosr.errors import InputError
from stereosr.io import read_image, write_image


def expected_count(h_lr: int, w_lr: int, ph: int = 30, pw: int = 90, stride: int = 20) -> int:
    return len([(y, x) for y in range(0, h_lr - ph + 1, stride)
                for x in range(0, w_lr - pw + 1, stride)])


def test_count_formula_matches_enumeration() -> None:
    for h in range(25, 120, 7):
        for w in range(85, 200, 11):
            assert count_patches((h, w)) == expected_count(h, w) == len(patch_positions((h, w)))
    assert patch_positions((50, 110))[:3] == [(0, 0), (0, 20), (20, 0)]


@pytest.fixture()
def hr_pairs(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Two smooth random HR pairs, sizes not multiples of 4."""
    rng = np.random.default_rng(3)
    root = tmp_path / "hr"
    root.mkdir()
    views = {}
    for name, (h, w) in (("1", (4 * 70 + 3, 4 * 157 + 1)), ("2", (4 * 31 + 2, 4 * 95))):
        pair = []
        for _ in range(2):
            base = rng.integers(0, 256, size=(h // 8 + 2, w // 8 + 2, 3)).astype(np.uint8)
            img = np.repeat(np.repeat(base, 8, 0), 8, 1)[:h, :w]
            pair.append(np.clip(img.astype(int) + rng.integers(-20, 21, img.shape), 0, 255)
                        .astype(np.uint8))
            write_image(root / f"{name}_{'LR'[len(pair) - 1]}.png", pair[-1])
        views[name] = (pair[0], pair[1])
    return root, views


def test_x4_patches_count_and_content(hr_pairs: tuple[Path, dict], tmp_path: Path) -> None:
    root, views = hr_pairs
    out = tmp_path / "patches"
    report = make_patches(find_pairs(root), out, scale=4)
    # pair 1: HR 283x629 -> 280x628, LR 70x157; pair 2: HR 126x380 -> 124x380, LR 31x95
    n1, n2 = expected_count(70, 157), expected_count(31, 95)
    assert (n1, n2) == (3 * 4, 1 * 1)
    assert report.patches == n1 + n2 and report.pairs == 2
    folders = sorted(p.name for p in out.iterdir())
    assert folders == [f"{i:06d}" for i in range(1, n1 + n2 + 1)]
    k = 0
    for name, n in (("1", n1), ("2", n2)):
        hr_l, hr_r = (v[: v.shape[0] // 4 * 4, : v.shape[1] // 4 * 4] for v in views[name])
        lr_l, lr_r = imresize(hr_l, 0.25), imresize(hr_r, 0.25)
        positions = [(y, x) for y in range(0, lr_l.shape[0] - 29, 20)
                     for x in range(0, lr_l.shape[1] - 89, 20)]
        assert len(positions) == n
        for y, x in positions:
            k += 1
            d = out / f"{k:06d}"
            got = {f: read_image(d / f"{f}.png") for f in ("hr0", "hr1", "lr0", "lr1")}
            assert got["lr0"].shape == (30, 90, 3) and got["hr0"].shape == (120, 360, 3)
            np.testing.assert_array_equal(got["lr0"], lr_l[y:y + 30, x:x + 90])
            np.testing.assert_array_equal(got["lr1"], lr_r[y:y + 30, x:x + 90])
            np.testing.assert_array_equal(got["hr0"], hr_l[4 * y:4 * y + 120, 4 * x:4 * x + 360])
            np.testing.assert_array_equal(got["hr1"], hr_r[4 * y:4 * y + 120, 4 * x:4 * x + 360])
    # the folder is a valid "patches" data set again
    again = find_pairs(out)
    assert again.layout == "patches" and len(again) == n1 + n2


def test_x2_same_lr_patch_size(hr_pairs: tuple[Path, dict], tmp_path: Path) -> None:
    root, views = hr_pairs
    out = tmp_path / "p2"
    pairs = [p for p in find_pairs(root) if p.name == "2"]
    report = make_patches(pairs, out, scale=2, stride=40)
    # HR 126x380 (already even) -> LR 63x190: rows 0, (40 > 33) ; cols 0, 40, 80
    assert report.patches == expected_count(63, 190, stride=40) == 3
    hr = views["2"][0]
    lr = imresize(hr, 0.5)
    d = out / "000003"
    np.testing.assert_array_equal(read_image(d / "lr0.png"), lr[0:30, 80:170])
    np.testing.assert_array_equal(read_image(d / "hr0.png"), hr[0:60, 160:340])


def test_refuses_overwrite_and_replaces_with_flag(hr_pairs: tuple[Path, dict],
                                                  tmp_path: Path) -> None:
    root, _ = hr_pairs
    out = tmp_path / "p"
    make_patches(find_pairs(root), out, scale=4)
    before = (out / "000001" / "hr0.png").read_bytes()
    with pytest.raises(InputError, match="not empty.*overwrite=True"):
        make_patches(find_pairs(root), out, scale=4)
    # a smaller second run with --overwrite removes the surplus folders of the first
    only2 = [p for p in find_pairs(root) if p.name == "2"]
    rep = make_patches(only2, out, scale=4, overwrite=True)
    assert rep.patches == 1 and rep.removed_stale == 12
    assert sorted(p.name for p in out.iterdir()) == ["000001"]
    assert (out / "000001" / "hr0.png").read_bytes() != before


def test_cli_make_patches(hr_pairs: tuple[Path, dict], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = hr_pairs
    out = tmp_path / "cli"
    assert main(["make-patches", str(root), str(out), "--scale", "4", "--lr-size", "30x90",
                 "--stride", "20"]) == 0
    assert "wrote 13 patches" in capsys.readouterr().out
    assert main(["make-patches", str(root), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    (root / "2_R.png").unlink()
    assert main(["make-patches", str(root), str(tmp_path / "x")]) == 2
    assert "--skip-bad" in capsys.readouterr().err
    assert main(["make-patches", str(root), str(tmp_path / "y"), "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "warning: skipping pair '2'" in err and "2_R.png: file not found" in err
    assert len(list((tmp_path / "y").iterdir())) == 12


def test_hr_downscale_and_too_small(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, size=(2 * 4 * 30 + 1, 2 * 4 * 90, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "a_L.png", big)
    write_image(tmp_path / "in" / "a_R.png", big)
    write_image(tmp_path / "in" / "b_L.png", big[:40, :40])
    write_image(tmp_path / "in" / "b_R.png", big[:40, :40])
    rep = make_patches(find_pairs(tmp_path / "in"), tmp_path / "o", scale=4, hr_downscale=2)
    assert rep.patches == 1 and rep.too_small == ["b"]
    half = imresize(big, 0.5)                      # 241x720 -> 121x360, modcrop -> 120x360
    np.testing.assert_array_equal(read_image(tmp_path / "o/000001/hr0.png"), half[:120, :360])
