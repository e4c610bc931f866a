"""`stereosr upscale` end to end, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stereosr.cli import main
from stereosr.infer import upscale
from stereosr.io import read_image
from stereosr.models.checkpoint import load_model


def _img(path: Path, seed: int, size: tuple[int, int] = (12, 8), mode: str = "RGB") -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "RGB":
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(path)
    elif mode == "L":
        arr = rng.integers(0, 256, (h, w), dtype=np.uint8)
        Image.fromarray(arr).save(path)
    elif mode == "RGBA":
        arr = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        Image.fromarray(arr).save(path)
    elif mode == "I;16":
        arr = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        Image.fromarray(arr).save(path)
    else:
        raise ValueError(mode)
    return arr


def _run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["upscale", *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_pair_end_to_end(tmp_path, weights, capsys):
    a = _img(tmp_path / "scene_left.png", 1)
    b = _img(tmp_path / "scene_right.png", 2)
    out = tmp_path / "out"
    rc, stdout, _ = _run(capsys, str(tmp_path / "scene_left.png"), str(tmp_path / "scene_right.png"),
                         "-o", str(out), "--weights", str(weights), "--device", "cpu", "--json")
    assert rc == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["pairs"] == 1 and summary["scale"] == 2
    ref_l, ref_r = upscale(a, b, load_model(weights))
    assert np.array_equal(read_image(out / "scene_left.png"), ref_l)
    assert np.array_equal(read_image(out / "scene_right.png"), ref_r)
    assert sorted(p.name for p in out.iterdir()) == ["scene_left.png", "scene_right.png"]
    # Without --weights the summary names the packaged model that ran, not "default".
    from stereosr.models.registry import DEFAULT_MODEL

    rc, stdout, _ = _run(capsys, str(tmp_path / "scene_left.png"), str(tmp_path / "scene_right.png"),
                         "-o", str(tmp_path / "out2"), "--device", "cpu", "--json")
    assert rc == 0 and json.loads(stdout.strip().splitlines()[-1])["weights"] == DEFAULT_MODEL
    assert DEFAULT_MODEL != "default"


def test_name_collision_gets_suffixes(tmp_path, weights, capsys):
    (tmp_path / "left").mkdir()
    (tmp_path / "right").mkdir()
    _img(tmp_path / "left" / "0001.png", 1)
    _img(tmp_path / "right" / "0001.png", 2)
    out = tmp_path / "o"
    rc, _, _ = _run(capsys, str(tmp_path / "left/0001.png"), str(tmp_path / "right/0001.png"),
                    "-o", str(out), "--weights", str(weights))
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["0001_L.png", "0001_R.png"]


def test_folder_mode(tmp_path, weights, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        _img(src / f"{i + 1:04d}_L.png", 10 + i)
        _img(src / f"{i + 1:04d}_R.png", 20 + i)
    out = tmp_path / "out"
    rc, stdout, _ = _run(capsys, "--input-dir", str(src), "-o", str(out), "--weights",
                         str(weights), "--json")
    assert rc == 0
    assert json.loads(stdout.strip().splitlines()[-1])["pairs"] == 3
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{i:04d}_{s}.png" for i in (1, 2, 3) for s in "LR")
    ref, _ = upscale(read_image(src / "0002_L.png"), read_image(src / "0002_R.png"),
                     load_model(weights))
    assert np.array_equal(read_image(out / "0002_L.png"), ref)
    # One image given as --input-dir: said for what it is, not "not found".
    rc, _, err = _run(capsys, "--input-dir", str(src / "0001_L.png"), "-o", str(out),
                      "--weights", str(weights))
    assert rc == 2 and err.strip().endswith("0001_L.png: --input-dir takes a folder of pairs; "
                                            "for one pair give its LEFT and RIGHT images instead")


@pytest.mark.parametrize("mode,channels,dtype", [("L", 1, np.uint8), ("RGBA", 4, np.uint8),
                                                 ("I;16", 1, np.uint16)])
def test_kinds_preserved(tmp_path, weights, capsys, mode, channels, dtype):
    _img(tmp_path / "a.png", 1, mode=mode)
    _img(tmp_path / "b.png", 2, mode=mode)
    rc, _, _ = _run(capsys, str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o",
                    str(tmp_path / "o"), "--weights", str(weights))
    assert rc == 0
    out = read_image(tmp_path / "o" / "a.png")
    assert out.shape == (16, 24, channels) and out.dtype == dtype


def test_16bit_rgb_in_16bit_out(tmp_path, weights, capsys):
    from stereosr.io import write_image

    rng = np.random.default_rng(0)
    for n in ("a", "b"):
        write_image(tmp_path / f"{n}.png", rng.integers(0, 65536, (8, 12, 3), dtype=np.uint16))
    rc, _, _ = _run(capsys, str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o",
                    str(tmp_path / "o"), "--weights", str(weights))
    assert rc == 0
    out = read_image(tmp_path / "o" / "a.png")
    assert out.dtype == np.uint16 and out.shape == (16, 24, 3)
    ref, _ = upscale(read_image(tmp_path / "a.png"), read_image(tmp_path / "b.png"),
                     load_model(weights))
    assert np.array_equal(out, ref)


def test_exif_orientation_applied(tmp_path, weights, capsys):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    for n in ("a", "b"):
        Image.fromarray(arr).save(tmp_path / f"{n}.jpg", exif=exif.tobytes(), quality=95)
    assert read_image(tmp_path / "a.jpg").shape == (12, 8, 3)
    rc, _, _ = _run(capsys, str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), "-o",
                    str(tmp_path / "o"), "--weights", str(weights))
    assert rc == 0
    assert read_image(tmp_path / "o" / "a.png").shape == (24, 16, 3)


def _bad_files(tmp: Path) -> dict[str, tuple[Path, Path]]:
    good_l, good_r = tmp / "l.png", tmp / "r.png"
    _img(good_l, 1)
    _img(good_r, 2)
    small = tmp / "small.png"
    _img(small, 3, size=(10, 8))
    corrupt = tmp / "corrupt.png"
    corrupt.write_bytes(good_l.read_bytes()[:60])
    garbage = tmp / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    text = tmp / "notes.txt"
    text.write_text("not an image")
    zero = tmp / "zero.png"
    # A PNG header declaring a 0 x 0 image.
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    zero.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    return {
        "missing": (tmp / "nope.png", good_r),
        "truncated": (corrupt, good_r),
        "corrupt": (garbage, good_r),
        "not-an-image": (text, good_r),
        "size-mismatch": (good_l, small),
        "zero-size": (zero, zero),
    }


@pytest.mark.parametrize("case", ["missing", "truncated", "corrupt", "not-an-image",
                                  "size-mismatch", "zero-size"])
def test_bad_images(tmp_path, weights, capsys, case):
    left, right = _bad_files(tmp_path)[case]
    out = tmp_path / "out"
    rc, _stdout, err = _run(capsys, str(left), str(right), "-o", str(out), "--weights",
                           str(weights))
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("stereosr upscale: error:")
    expected = {"missing": "not found", "truncated": "truncated", "corrupt": "not an image",
                "not-an-image": "not an image", "size-mismatch": "differ in size",
                "zero-size": "zero size"}[case]
    assert expected in err
    assert "Traceback" not in err
    assert not out.exists()  # not even an empty output folder is left behind


def test_bad_checkpoints(tmp_path, capsys):
    _img(tmp_path / "l.png", 1)
    _img(tmp_path / "r.png", 2)
    foreign = tmp_path / "foreign.pth"
    torch.save({"params": {"conv.weight": torch.zeros(1)}}, foreign)

    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    evil = tmp_path / "evil.pth"
    torch.save({"params": Payload()}, evil)
    for ckpt, msg in [(foreign, "not a NAFSSR state dict"), (evil, "never executes"),
                      (tmp_path / "l.png", "not a readable")]:
        rc, stdout, err = _run(capsys, str(tmp_path / "l.png"), str(tmp_path / "r.png"), "-o",
                               str(tmp_path / "o"), "--weights", str(ckpt))
        assert rc == 2 and msg in err and "executed" not in stdout
        assert len(err.strip().splitlines()) == 1
        assert not (tmp_path / "o").exists()


def test_unwritable_output(tmp_path, weights, capsys):
    _img(tmp_path / "l.png", 1)
    _img(tmp_path / "r.png", 2)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for target in (blocker, blocker / "sub", Path("/proc/stereosr-test-out")):
        rc, _, err = _run(capsys, str(tmp_path / "l.png"), str(tmp_path / "r.png"), "-o",
                          str(target), "--weights", str(weights))
        assert rc == 2 and len(err.strip().splitlines()) == 1
    assert blocker.read_text() == "x"


def test_existing_outputs_kept_unless_overwrite(tmp_path, weights, capsys):
    _img(tmp_path / "l.png", 1)
    _img(tmp_path / "r.png", 2)
    out = tmp_path / "o"
    out.mkdir()
    (out / "l.png").write_bytes(b"user data")
    rc, _, err = _run(capsys, str(tmp_path / "l.png"), str(tmp_path / "r.png"), "-o", str(out),
                      "--weights", str(weights))
    assert rc == 2 and "--overwrite" in err
    assert (out / "l.png").read_bytes() == b"user data" and not (out / "r.png").exists()
    rc, _, _ = _run(capsys, str(tmp_path / "l.png"), str(tmp_path / "r.png"), "-o", str(out),
                    "--weights", str(weights), "--overwrite")
    assert rc == 0 and read_image(out / "l.png").shape == (16, 24, 3)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    from stereosr import files

    target = tmp_path / "a.png"
    calls = {"n": 0}
    real = files.os.link

    def failing_link(src: str, dst: str) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(files.os, "link", failing_link)
    with pytest.raises(KeyboardInterrupt):
        files.commit_files([(target, b"one"), (tmp_path / "b.png", b"two")], overwrite=False)
    # All or none: the first file of the group is withdrawn too, and no temporary file stays.
    assert calls["n"] == 2 and list(tmp_path.iterdir()) == []


def test_precision_option(tmp_path, weights, capsys):
    a = _img(tmp_path / "p_left.png", 5)
    b = _img(tmp_path / "p_right.png", 6)
    out = tmp_path / "out"
    rc, _, _ = _run(capsys, str(tmp_path / "p_left.png"), str(tmp_path / "p_right.png"), "-o",
                    str(out), "--weights", str(weights), "--device", "cpu", "--precision", "bf16")
    assert rc == 0
    ref_l, _ = upscale(a, b, load_model(weights), precision="bf16")
    assert np.array_equal(read_image(out / "p_left.png"), ref_l)
    full_l, _ = upscale(a, b, load_model(weights))
    assert 0 < np.abs(ref_l.astype(int) - full_l.astype(int)).max() <= 8  # bf16 ran
    rc, _, err = _run(capsys, str(tmp_path / "p_left.png"), str(tmp_path / "p_right.png"), "-o",
                      str(tmp_path / "o2"), "--backend", "onnxruntime", "--onnx", "x.onnx",
                      "--precision", "fp16")
    assert rc == 2 and "--precision applies to --backend torch" in err
    assert len(err.strip().splitlines()) == 1
