"""ONNX / torch.export of NAFSSR (dynamic batch, height, width; TLC computed in the graph) and
the onnxruntime backend, checked against the eager model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stereosr.cli import main
from stereosr.errors import InputError
from stereosr.models import NAFSSR, NAFSSRConfig, enable_tlc

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from stereosr.export import export_onnx, export_program, verification_sizes
from stereosr.infer.onnx_backend import OnnxStereoModel

# TLC window 9 x 15 (train size 6 x 10); sizes on both sides of it, in both dimensions.
TRAIN_SIZE = (6, 10)
SIZES = [(1, 6, 10), (2, 13, 23), (1, 7, 31), (1, 17, 9)]


def _tiny_model(seed: int = 0) -> NAFSSR:
    torch.manual_seed(seed)
    model = NAFSSR(NAFSSRConfig(width=8, num_blocks=2, scale=2))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return enable_tlc(model, TRAIN_SIZE).eval()


def _pair(b: int, h: int, w: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[NAFSSR, Path, dict]:
    """One export through the CLI (weights from a checkpoint file), shared by the tests."""
    from stereosr.models.checkpoint import save_model

    folder = tmp_path_factory.mktemp("export")
    model = _tiny_model()
    ckpt = folder / "tiny.safetensors"
    save_model(model, ckpt, {"note": "test"}, train_size=TRAIN_SIZE)
    out = folder / "tiny.onnx"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["export", "--onnx", str(out), "--weights", str(ckpt)])
    assert rc == 0
    summary = json.loads(buf.getvalue().strip().splitlines()[-1])
    return model, out, summary


def test_cli_export_writes_verified_onnx(exported):
    _, out, summary = exported
    assert out.is_file() and summary["onnx"] == str(out)
    assert summary["scale"] == 2 and summary["width"] == 8 and summary["num_blocks"] == 2
    assert summary["onnx_max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("shape", SIZES)
def test_onnxruntime_matches_eager(exported, shape):
    model, out, _ = exported
    session = OnnxStereoModel(out, device="cpu")
    left, right = _pair(*shape)
    with torch.inference_mode():
        ref = model(left, right)
    got = session(left.numpy(), right.numpy())
    assert all(isinstance(a, np.ndarray) for a in got)
    for a, b in zip(got, ref):
        assert a.shape == tuple(b.shape)
        assert np.abs(a - b.numpy()).max() <= 1e-4


def test_onnx_graph_interface(exported):
    import onnx

    _, out, _ = exported
    proto = onnx.load(str(out))
    names_in = [i.name for i in proto.graph.input]
    names_out = [o.name for o in proto.graph.output]
    assert names_in == ["left", "right"] and names_out == ["sr_left", "sr_right"]
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1] == 3
    assert isinstance(dims[2], str) and isinstance(dims[3], str)
    ops = {n.op_type for n in proto.graph.node}
    assert "LayerNormalization" in ops and "CumSum" in ops
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["stereosr.scale"] == "2" and meta["stereosr.tlc_train_size"] == "6x10"


def test_metadata_round_trips_through_the_shared_interface(exported):
    from stereosr.export import onnx_metadata
    from stereosr.onnx_interface import OnnxModelInfo

    model, out, _ = exported
    info = OnnxStereoModel(out).info
    assert info == OnnxModelInfo.from_metadata(onnx_metadata(model))
    assert info == OnnxModelInfo(scale=2, width=8, num_blocks=2, tlc_train_size=TRAIN_SIZE)
    # Missing or malformed entries read as unknown; the fallback scale is used.
    assert OnnxModelInfo.from_metadata({"stereosr.scale": "x", "stereosr.tlc_train_size": "3x"},
                                       scale=4) == OnnxModelInfo(scale=4)


def test_verification_is_nan_aware(exported):
    """A model giving NaN must fail the check, not report a difference of 0.0."""
    from stereosr.errors import StereoSRError
    from stereosr.export import verify_onnx

    model, out, _ = exported
    broken = _tiny_model()
    with torch.no_grad():
        broken.body[0].module.blk.conv1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(StereoSRError, match="NaN"):
        verify_onnx(broken, out)
    assert verify_onnx(model, out) <= 1e-4


def test_backend_tensor_interface_and_scale(exported):
    model, out, _ = exported
    session = OnnxStereoModel(out)
    assert session.scale == 2 and session.config.width == 8
    assert session.config.tlc_train_size == TRAIN_SIZE
    left, right = _pair(1, 13, 23, seed=7)
    sr_l, sr_r = session(left, right)
    assert isinstance(sr_l, torch.Tensor) and sr_l.dtype == torch.float32
    with torch.inference_mode():
        ref = model(left, right)
    assert float((sr_l - ref[0]).abs().max()) <= 1e-4
    assert float((sr_r - ref[1]).abs().max()) <= 1e-4


def test_backend_with_tiled_upscale(exported):
    upscale = pytest.importorskip("stereosr.infer.upscale")
    model, out, _ = exported
    session = OnnxStereoModel(out)
    left, right = _pair(1, 13, 23, seed=8)
    a = upscale.upscale_tensors(session, left, right, tile=None, auto_tile=False)
    with torch.inference_mode():
        ref = model(left, right)
    assert float((a[0] - ref[0]).abs().max()) <= 1e-4


def test_backend_rejects_bad_input(tmp_path, exported):
    _, out, _ = exported
    with pytest.raises(InputError, match="no such ONNX file"):
        OnnxStereoModel(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a loadable ONNX model"):
        OnnxStereoModel(junk)
    session = OnnxStereoModel(out)
    with pytest.raises(InputError, match="differ in size"):
        session(np.zeros((1, 3, 8, 8), np.float32), np.zeros((1, 3, 8, 9), np.float32))
    with pytest.raises(InputError, match=r"\(B, 3, h, w\)"):
        session(np.zeros((3, 8, 8), np.float32), np.zeros((3, 8, 8), np.float32))


def test_cli_refuses_overwrite_and_old_opset(exported, capsys):
    _, out, _ = exported
    before = out.read_bytes()
    assert main(["export", "--onnx", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["export", "--onnx", str(out.with_name("x.onnx")), "--opset", "13"]) == 2
    assert "opset" in capsys.readouterr().err
    assert main(["export"]) == 2
    assert "nothing to export" in capsys.readouterr().err


def test_export_api_refuses_existing_file(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"keep")
    with pytest.raises(InputError, match="already exists"):
        export_onnx(_tiny_model(), target)
    assert target.read_bytes() == b"keep"


def test_torch_export_program_is_dynamic():
    model = _tiny_model(seed=2)
    program = export_program(model, example_size=(12, 20)).module()
    for shape in SIZES:
        left, right = _pair(*shape, seed=3)
        with torch.inference_mode():
            ref = model(left, right)
            got = program(left, right)
        assert max(float((a - b).abs().max()) for a, b in zip(got, ref)) <= 1e-5


def test_verification_sizes_straddle_the_window():
    sizes = verification_sizes(_tiny_model())
    assert sizes[0][0] <= 9 and sizes[0][1] <= 15
    assert sizes[1][0] > 9 and sizes[1][1] > 15


def test_cli_upscale_with_onnxruntime_backend(tmp_path, exported, capsys):
    from PIL import Image

    from stereosr.infer import upscale
    from stereosr.io import read_image

    model, onnx_path, _ = exported
    rng = np.random.default_rng(3)
    for side in "LR":
        Image.fromarray(rng.integers(0, 256, (14, 20, 3), dtype=np.uint8)).save(
            tmp_path / f"p_{side}.png")
    args = ["upscale", str(tmp_path / "p_L.png"), str(tmp_path / "p_R.png"), "-o",
            str(tmp_path / "out"), "--backend", "onnxruntime", "--onnx", str(onnx_path),
            "--device", "cpu", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["backend"] == "onnxruntime" and summary["scale"] == 2
    ref_l, _ = upscale(read_image(tmp_path / "p_L.png"), read_image(tmp_path / "p_R.png"), model)
    out_l = read_image(tmp_path / "out" / "p_L.png").astype(int)
    assert np.abs(out_l - ref_l.astype(int)).max() <= 1  # 1e-4 in float can flip a rounding
    no_model = [a for a in args if a not in (str(onnx_path), "--onnx")] + ["--overwrite"]
    assert main(no_model) == 2  # --onnx missing
    assert "--onnx" in capsys.readouterr().err
