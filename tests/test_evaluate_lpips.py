"""``stereosr evaluate --metrics ...lpips,consistency``: LPIPS equal to the reference ``lpips``
package, with the package's real heads files and ImageNet-layout backbone weights served from
127.0.0.1; the stereo consistency metric from disparity maps; offline and checksum errors."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from weights_utils import random_backbone_state

from stereosr.cli import main
from stereosr.evaluate import bicubic_upscale, make_lr
from stereosr.metrics import LPIPS_HEADS, lpips_heads_path, stereo_consistency

pytestmark = pytest.mark.skipif(
    lpips_heads_path("alex") is None,
    reason="the reference lpips package is not installed (scripts/setup.sh installs it with "
           "pip install --no-deps lpips)")


def _serve_backbone(root: Path, base: str, arch: str, stem: str) -> tuple[str, dict]:
    """Write the weights under a torchvision-style name (hash prefix in the name); its URL."""
    state = random_backbone_state(arch, seed=11)
    raw = root / "raw.pth"
    torch.save(state, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    name = f"{stem}-{digest[:8]}.pth"
    raw.rename(root / name)
    return f"{base}/{name}", state


def _torchvision_features(arch: str) -> nn.Sequential:
    """torchvision's ``features`` stacks, written out layer by layer (reference side)."""
    if arch == "alexnet":
        return nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
    layers: list[nn.Module] = []
    c = 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            c = int(v)
    return nn.Sequential(*layers)


def _reference_lpips(net: str, state: dict, pairs: list[tuple[np.ndarray, np.ndarray]],
                     monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """LPIPS of the ``lpips`` package itself (its own code and heads file). torchvision does
    not import beside the CPU torch here, so a stand-in module hands the package the
    ImageNet-layout ``features`` with ``state`` loaded, which is all it takes from it."""
    arch = "alexnet" if net == "alex" else "vgg16"

    def model(pretrained: bool = True, **_: object) -> nn.Module:
        m = nn.Module()
        m.features = _torchvision_features(arch)
        m.features.load_state_dict({k[len("features."):]: v for k, v in state.items()
                                    if k.startswith("features.")})
        return m

    tv = types.ModuleType("torchvision")
    tv_models = types.ModuleType("torchvision.models")
    tv_models.alexnet = model  # type: ignore[attr-defined]
    tv_models.vgg16 = model  # type: ignore[attr-defined]
    tv.models = tv_models  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", tv_models)
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, name)
    import lpips

    ref = lpips.LPIPS(net=net, version="0.1", verbose=False).eval()
    out = []
    with torch.no_grad():
        for sr, hr in pairs:
            x = torch.from_numpy(sr.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
            y = torch.from_numpy(hr.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
            out.append(float(ref(x, y, normalize=True).item()))
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        del sys.modules[name]
    return out


def _write_pair(folder: Path, name: str, left: np.ndarray, right: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(left).save(folder / f"{name}_L.png")
    Image.fromarray(right).save(folder / f"{name}_R.png")


@pytest.fixture()
def folders(tmp_path: Path, motorcycle: tuple[np.ndarray, ...]) -> dict[str, object]:
    """HR crops of the Motorcycle pair with KITTI-style disparity PNGs (0 = unknown), and SR
    made by MATLAB-bicubic down- and upscaling."""
    left, right, disp = motorcycle
    hr_dir, sr_dir = tmp_path / "hr", tmp_path / "sr"
    views: dict[str, tuple[np.ndarray, ...]] = {}
    for name, (y, x) in {"p1": (120, 200), "p2": (300, 420)}.items():
        hl, hr = left[y:y + 72, x:x + 128], right[y:y + 72, x:x + 128]
        d = disp[y:y + 72, x:x + 128]
        png = np.where(np.isfinite(d), np.round(d * 256.0), 0).astype(np.uint16)
        (hr_dir / "disparity").mkdir(parents=True, exist_ok=True)
        Image.fromarray(png).save(hr_dir / "disparity" / f"{name}.png")
        sl, sr = (np.clip(np.round(bicubic_upscale(make_lr(v, 4), 4) * 255), 0, 255)
                  .astype(np.uint8) for v in (hl, hr))
        _write_pair(hr_dir, name, hl, hr)
        _write_pair(sr_dir, name, sl, sr)
        views[name] = (sl, sr, hl, hr, np.where(png > 0, png / 256.0, np.inf))
    return {"hr": hr_dir, "sr": sr_dir, "views": views}


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["evaluate", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_equals_reference_package(net: str, tmp_path: Path, folders: dict,
                                        server: tuple[str, Path],
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    base, root = server
    stem = "alexnet-owt" if net == "alex" else "vgg16"
    url, state = _serve_backbone(root, base, "alexnet" if net == "alex" else "vgg16", stem)
    monkeypatch.setenv("STEREOSR_CACHE", str(tmp_path / "cache"))
    report, table = tmp_path / "r.json", tmp_path / "r.csv"
    args = ["--sr", str(folders["sr"]), "--hr", str(folders["hr"]), "--metrics",
            "psnr,ssim,lpips", "--lpips-net", net, "--lpips-weights", url, "--json",
            str(report), "--csv", str(table), "--figure", str(tmp_path / "f.png")]
    code, out, err = _run(args, capsys)
    assert code == 0, err
    rep = json.loads(report.read_text())
    views = folders["views"]
    ref = _reference_lpips(net, state, [(v[0], v[2]) for v in views.values()]
                           + [(v[1], v[3]) for v in views.values()], monkeypatch)
    n = len(views)
    diffs = []
    for i, ps in enumerate(rep["pairs"]):
        s = ps["scores"]["sr"]["stereo"]
        diffs += [abs(s["lpips_left"] - ref[i]), abs(s["lpips_right"] - ref[n + i])]
        assert s["lpips"] == pytest.approx((s["lpips_left"] + s["lpips_right"]) / 2, abs=1e-12)
        assert ps["scores"]["sr"]["left"]["lpips_left"] == ps["scores"]["sr"]["left"]["lpips"]
    with capsys.disabled():  # shown with pytest -s: the measured difference
        print(f"\nLPIPS-{net}: max |stereosr - lpips package| = {max(diffs):.3g} over "
              f"{len(diffs)} views (values {min(ref):.4f}..{max(ref):.4f})")
    assert max(diffs) < 1e-6
    assert 0.005 < min(ref) and max(ref) < 1.0  # a real, non-trivial distance
    assert rep["meta"]["metrics"] == ["psnr", "ssim", "lpips"]
    assert rep["mean"]["sr"]["stereo"]["lpips"] == pytest.approx(
        sum(ref) / len(ref), abs=1e-6)
    head = table.read_text().splitlines()[0]
    assert head == "pair,method,protocol,psnr,ssim,lpips,lpips_left,lpips_right"
    assert "LPIPS left" in out and "LPIPS right" in out
    # --data mode: the bicubic baseline of the HR pairs is the SR folder above (same LR, same
    # rounding), so its LPIPS is the same; the weights now come from the cache, not the server
    (root / url.rsplit("/", 1)[1]).unlink()
    data_report = tmp_path / "d.json"
    code, out, err = _run(["--data", str(folders["hr"]), "--bicubic-only", "--metrics",
                           "lpips,psnr", "--lpips-net", net, "--lpips-weights", url, "--json",
                           str(data_report), "--figure", str(tmp_path / "d.png")], capsys)
    assert code == 0, err
    drep = json.loads(data_report.read_text())
    for ps, dps in zip(rep["pairs"], drep["pairs"]):
        for key in ("lpips", "lpips_left", "lpips_right", "psnr"):
            assert dps["scores"]["bicubic"]["stereo"][key] == pytest.approx(
                ps["scores"]["sr"]["stereo"][key], abs=1e-9)
    assert "ssim" not in drep["mean"]["bicubic"]["stereo"]


def test_consistency_metric_from_disparity_maps(tmp_path: Path, folders: dict,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "c.json"
    code, out, err = _run(["--sr", str(folders["sr"]), "--hr", str(folders["hr"]),
                           "--metrics", "psnr,consistency", "--json", str(report)], capsys)
    assert code == 0, err
    rep = json.loads(report.read_text())
    for ps in rep["pairs"]:
        sl, sr, hl, hr, d = folders["views"][ps["name"]]
        want = stereo_consistency(sl, sr, hl, hr, d)
        got = ps["scores"]["sr"]["stereo"]
        assert got["consistency"] == pytest.approx(want.excess, abs=1e-9)
        assert got["warp_error_sr"] == pytest.approx(want.sr, abs=1e-9)
        assert got["warp_error_hr"] > 0 and "ssim" not in got
        assert "consistency" not in ps["scores"]["sr"]["left"]  # one view: no consistency
    assert "warp excess" in out
    # --data mode reads the same disparity maps (bicubic baseline = the SR folder above)
    code, _, err = _run(["--data", str(folders["hr"]), "--bicubic-only", "--metrics",
                         "consistency", "--json", str(tmp_path / "d.json")], capsys)
    assert code == 0, err
    drep = json.loads((tmp_path / "d.json").read_text())
    assert drep["pairs"][1]["scores"]["bicubic"]["stereo"]["consistency"] == pytest.approx(
        rep["pairs"][1]["scores"]["sr"]["stereo"]["consistency"], abs=1e-9)
    # HR pairs without disparity maps: one line naming the pair and the layouts that have them
    shutil.rmtree(folders["hr"] / "disparity")
    code, _, err = _run(["--sr", str(folders["sr"]), "--hr", str(folders["hr"]), "--metrics",
                         "consistency", "--json", str(tmp_path / "x.json")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "pair p1: no disparity map" in err and not (tmp_path / "x.json").exists()


def _one_line_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, _, err = _run(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    return lines[0]


def test_offline_and_checksum_errors(tmp_path: Path, folders: dict,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("STEREOSR_CACHE", str(cache))
    monkeypatch.setenv("STEREOSR_OFFLINE", "1")
    report = tmp_path / "r.json"
    args = ["--sr", str(folders["sr"]), "--hr", str(folders["hr"]), "--metrics", "lpips",
            "--json", str(report)]
    # no backbone weights: says which file to put where, in CLI terms
    line = _one_line_error(args, capsys)
    assert f"put alexnet-owt-7be5be79.pth (from https://download.pytorch.org/models/" \
           f"alexnet-owt-7be5be79.pth) at {cache / 'alexnet-owt-7be5be79.pth'}" in line
    assert "--lpips-weights PATH" in line and not report.exists()
    # a random file placed in the cache under the official name is refused, not used
    cache.mkdir()
    torch.save(random_backbone_state("alexnet", 3), cache / "alexnet-owt-7be5be79.pth")
    line = _one_line_error(args, capsys)
    assert "alexnet-owt-7be5be79.pth has SHA-256" in line and "expected 7be5be79" in line
    # a path whose bytes do not match the hash in its name, or --lpips-sha256
    line = _one_line_error([*args, "--lpips-weights", str(cache / "alexnet-owt-7be5be79.pth")],
                           capsys)
    assert "name carries '7be5be79'" in line
    other = tmp_path / "mine.pth"
    shutil.copy(cache / "alexnet-owt-7be5be79.pth", other)
    line = _one_line_error([*args, "--lpips-weights", str(other), "--lpips-sha256", "abc123"],
                           capsys)
    assert "mine.pth has SHA-256" in line and "expected abc123" in line
    line = _one_line_error([*args, "--lpips-weights", str(other), "--lpips-sha256", "xyz"],
                           capsys)
    assert "--lpips-sha256 must be 1 to 64 hex digits, got 'xyz'" in line
    # heads: without the lpips package the cache is asked; a wrong file there is refused
    import stereosr.metrics.lpips as lp

    package_heads = lpips_heads_path("alex")
    assert package_heads is not None
    monkeypatch.setattr(lp, "lpips_heads_path", lambda net: None)
    line = _one_line_error([*args, "--lpips-weights", str(other)], capsys)
    assert "put lpips-v0.1-alex.pth" in line and str(cache / "lpips-v0.1-alex.pth") in line
    assert "--lpips-heads PATH" in line and "pip install --no-deps lpips" in line
    (cache / "lpips-v0.1-alex.pth").write_bytes(b"not the heads")
    line = _one_line_error([*args, "--lpips-weights", str(other)], capsys)
    assert "lpips-v0.1-alex.pth has SHA-256" in line
    # the real heads file in the cache is accepted and read (legacy CUDA-saved layout)
    shutil.copy(package_heads, cache / "lpips-v0.1-alex.pth")
    assert hashlib.sha256((cache / "lpips-v0.1-alex.pth").read_bytes()).hexdigest() == \
        LPIPS_HEADS["alex"].sha256
    code, _, err = _run([*args, "--lpips-weights", str(other)], capsys)
    assert code == 0, err
    assert json.loads(report.read_text())["mean"]["sr"]["stereo"]["lpips"] > 0


def test_metric_given_as_protocol_or_unknown(tmp_path: Path, folders: dict,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--sr", str(folders["sr"]), "--hr", str(folders["hr"])]
    line = _one_line_error([*base, "--protocol", "lpips"], capsys)
    assert "'lpips' is a metric, not a protocol" in line and "--metrics" in line
    line = _one_line_error([*base, "--metrics", "psnr,lpipz"], capsys)
    assert "--metrics: unknown metric 'lpipz'; choose from psnr, ssim, lpips, consistency" in line
