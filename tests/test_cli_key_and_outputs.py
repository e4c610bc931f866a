"""--key on upscale/evaluate/export, output checks before any work, and library messages that
name API parameters while the command line names its flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stereosr.cli import main
from stereosr.errors import InputError
from stereosr.infer import upscale
from stereosr.io import read_image
from stereosr.models import NAFSSR, NAFSSRConfig
from stereosr.models.checkpoint import load_model, save_model


def _net(seed: int) -> NAFSSR:
    torch.manual_seed(seed)
    net = NAFSSR(NAFSSRConfig(width=8, num_blocks=1, scale=2))
    for name, p in net.named_parameters():
        torch.nn.init.normal_(p, std=0.05 if name.endswith(("beta", "gamma")) else 0.2)
    return net


@pytest.fixture(scope="module")
def two_entries(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A .pth holding two weight sets (``params``, ``params_ema``) and ``params`` alone."""
    d = tmp_path_factory.mktemp("key")
    a, b = _net(1), _net(2)
    torch.save({"params": a.state_dict(), "params_ema": b.state_dict()}, d / "two.pth")
    return d / "two.pth", save_model(a, d / "params.safetensors")


def _pair(folder: Path, hw: tuple[int, int] = (8, 12)) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for side in "LR":
        Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(
            folder / f"0001_{side}.png")
    return folder / "0001_L.png", folder / "0001_R.png"


def test_upscale_key_picks_the_entry(tmp_path: Path, two_entries: tuple[Path, Path]) -> None:
    two, only_params = two_entries
    left, right = _pair(tmp_path / "in")
    assert main(["upscale", str(left), str(right), "-o", str(tmp_path / "p"), "--weights",
                 str(two), "--key", "params", "--device", "cpu"]) == 0
    assert main(["upscale", str(left), str(right), "-o", str(tmp_path / "d"), "--weights",
                 str(two), "--device", "cpu"]) == 0
    ref = upscale(read_image(left), read_image(right), load_model(only_params))[0]
    assert np.array_equal(read_image(tmp_path / "p" / "0001_L.png"), ref)
    # Without --key the loader prefers params_ema: another result.
    assert not np.array_equal(read_image(tmp_path / "d" / "0001_L.png"), ref)


def test_evaluate_key_picks_the_entry(tmp_path: Path, two_entries: tuple[Path, Path]) -> None:
    two, only_params = two_entries
    _pair(tmp_path / "data", (16, 24))
    reports = []
    for name, extra in (("key", ["--weights", str(two), "--key", "params"]),
                        ("ref", ["--weights", str(only_params)])):
        out = tmp_path / f"{name}.json"
        assert main(["evaluate", "--data", str(tmp_path / "data"), "--protocol", "stereo",
                     "--no-bicubic", "--device", "cpu", "--json", str(out), *extra]) == 0
        reports.append(json.loads(out.read_text()))
    assert reports[0]["pairs"][0]["scores"] == reports[1]["pairs"][0]["scores"]


def test_export_key_picks_the_entry(tmp_path: Path, two_entries: tuple[Path, Path]) -> None:
    two, only_params = two_entries
    out = tmp_path / "m.pt2"
    assert main(["export", "--program", str(out), "--weights", str(two), "--key", "params",
                 "--no-verify"]) == 0
    program = torch.export.load(str(out)).module()
    x = torch.rand(1, 3, 8, 12)
    y = torch.rand(1, 3, 8, 12)
    ref = load_model(only_params, device="cpu")
    with torch.inference_mode():
        got, want = program(x, y)[0], ref(x, y)[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_unknown_key_is_one_line(tmp_path: Path, two_entries: tuple[Path, Path],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    two, _ = two_entries
    left, right = _pair(tmp_path / "in")
    rc = main(["upscale", str(left), str(right), "-o", str(tmp_path / "o"), "--weights",
               str(two), "--key", "nope", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "nope" in err
    assert not (tmp_path / "o" / "0001_L.png").exists()


@pytest.mark.parametrize("option", ["--onnx", "--program"])
def test_export_into_missing_folder_fails_before_the_work(option: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    import stereosr.models.checkpoint as ckpt

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(ckpt, "load_model", no_work)
    target = tmp_path / "missing" / ("m.onnx" if option == "--onnx" else "m.pt2")
    rc = main(["export", option, str(target)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"{tmp_path / 'missing'}: folder for {target.name} does not exist" in err


def test_library_names_parameters_cli_names_flags(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from stereosr.files import atomic_write_bytes

    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"1")
    with pytest.raises(InputError) as info:
        atomic_write_bytes(target, b"2")
    assert "overwrite=True" in str(info.value) and "--overwrite" not in str(info.value)
    assert target.read_bytes() == b"1"
    left, right = _pair(tmp_path / "in")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "0001_L.png").write_bytes(b"mine")
    rc = main(["upscale", str(left), str(right), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "pass --overwrite" in err and "overwrite=True" not in err
    assert (tmp_path / "o" / "0001_L.png").read_bytes() == b"mine"
