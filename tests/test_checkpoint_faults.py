"""Checkpoints that must be refused with one line, before anything unsafe or wasteful happens:
non-finite weights, bad metadata, zip bombs, pickled code, tensors under an unknown key; and
the permissions of what is written."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from stereosr.cli import main
from stereosr.errors import CheckpointError, InputError
from stereosr.models import NAFSSR, NAFSSRConfig
from stereosr.models.checkpoint import (
    FORMAT_TAG,
    convert_checkpoint,
    load_model,
    read_checkpoint,
    save_model,
)
from stereosr.train.state import atomic_save_tensors


def _state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = NAFSSR(NAFSSRConfig(width=8, num_blocks=1, scale=2))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def _refusals(tmp_path: Path, pth: Path, sd: dict[str, torch.Tensor]) -> list[str]:
    """Save ``sd`` as ``pth``; load_model (file and dict) and convert_checkpoint must each
    refuse it with one line, writing nothing. Returns the messages."""
    torch.save({"params": sd}, pth)
    msgs = []
    for call in (lambda: load_model(pth), lambda: load_model({"params": sd}),
                 lambda: convert_checkpoint(pth, tmp_path / "out.safetensors")):
        with pytest.raises(CheckpointError) as info:
            call()
        msgs.append(_one_line(info))
    assert not (tmp_path / "out.safetensors").exists()
    return msgs


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_refused_with_names(tmp_path, capsys, bad):
    sd = _state_dict()
    sd["intro.weight"][0, 0, 0, 0] = bad
    sd["up.0.weight"][1, 0, 0, 0] = bad
    pth = tmp_path / "broken.pth"
    for msg in _refusals(tmp_path, pth, sd):
        assert "intro.weight" in msg and "up.0.weight" in msg and "NaN or infinite" in msg
    (tmp_path / "l.png").write_bytes(b"")  # never read: the model is refused first
    rc = main(["convert", str(pth), str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "intro.weight" in err


def _safetensors_with(tmp_path: Path, **meta: str) -> Path:
    path = tmp_path / "m.safetensors"
    save_model(NAFSSR(NAFSSRConfig(width=8, num_blocks=1, scale=2)), path, overwrite=True)
    tensors = load_file(str(path))
    with open(path, "rb") as fh:  # keep our metadata, change the fields asked for
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
    save_file(tensors, str(path), metadata={**header["__metadata__"], **meta})
    return path


@pytest.mark.parametrize("value", ["[0, 0]", "[-30, 90]", "[30]", "[30, 90.5]", "abc", "[]",
                                   "[true, 90]"])
def test_bad_tlc_train_size_refused_at_load_and_convert(tmp_path, value):
    path = _safetensors_with(tmp_path, tlc_train_size=value)
    for call in (lambda: load_model(path), lambda: load_model(path, tlc=False),
                 lambda: convert_checkpoint(path, tmp_path / "c.safetensors")):
        with pytest.raises(CheckpointError, match="bad tlc_train_size metadata") as info:
            call()
        assert str(path) in _one_line(info)
    assert not (tmp_path / "c.safetensors").exists()


@pytest.mark.parametrize("field,value,match", [("scale", "4", "metadata says scale 4"),
                                               ("width", "0", "bad width metadata"),
                                               ("num_blocks", "x", "bad num_blocks metadata")])
def test_architecture_metadata_must_match_tensors(tmp_path, field, value, match):
    path = _safetensors_with(tmp_path, **{field: value})
    with pytest.raises(CheckpointError, match=match) as info:
        load_model(path)
    _one_line(info)


def test_convert_writes_validated_metadata_not_a_copy(tmp_path):
    path = _safetensors_with(tmp_path, tlc_train_size="[32, 96]", note="kept")
    out = convert_checkpoint(path, tmp_path / "c.safetensors", train_size=(24, 72))
    meta = read_checkpoint(out)[1]
    assert json.loads(meta["tlc_train_size"]) == [24, 72] and meta["note"] == "kept"
    assert meta["format"] == FORMAT_TAG and meta["scale"] == "2"


def test_zip_bomb_refused_before_reading(tmp_path, monkeypatch):
    """A small .pth whose entries declare far more bytes than the file holds is refused from
    the zip's central directory; torch.load never runs."""
    buf = io.BytesIO()
    torch.save({"params": {"w": torch.zeros(8 << 20)}}, buf)  # 32 MiB of zeros
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, \
            zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    assert bomb.stat().st_size < (1 << 20)

    def no_load(*args, **kwargs):
        raise AssertionError("torch.load ran on a zip bomb")

    monkeypatch.setattr(torch, "load", no_load)
    with pytest.raises(CheckpointError, match="declares 33,5\\d\\d,\\d\\d\\d bytes") as info:
        read_checkpoint(bomb)
    assert "zip bomb" in _one_line(info)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


@pytest.mark.parametrize("kind", ["zip", "legacy", "pickle0", "pickle2", "pickle5"])
def test_pickled_code_refused_as_the_readme_says(tmp_path, kind):
    marker = tmp_path / "executed"
    obj = {"params": _Payload(marker)}
    path = tmp_path / "evil.pth"
    if kind == "zip":
        torch.save(obj, path)
    elif kind == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=int(kind[-1])))
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    msg = _one_line(info)
    assert "holds pickled code" in msg and "makedirs" in msg and "never executes" in msg
    assert not marker.exists()


def test_corrupt_pickle_is_not_called_code(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"\x80\x02}q\x00(X\x01\x00\x00\x00a" + bytes(range(200)))
    with pytest.raises(CheckpointError, match="corrupt or foreign") as info:
        load_model(path)
    assert "code" not in _one_line(info)


def test_unknown_key_lists_top_level_keys(tmp_path, capsys):
    sd = _state_dict()
    path = tmp_path / "gan.pth"
    torch.save({"generator": sd, "step": 3}, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    msg = _one_line(info)
    assert "'generator', 'step'" in msg and "key='generator'" in msg
    model = load_model(path, key="generator", tlc=False)
    assert torch.equal(model.state_dict()["intro.weight"], sd["intro.weight"])
    rc = main(["convert", str(path), str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert rc == 2 and "--key generator" in err and "key=" not in err


def test_safetensors_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p1 = save_model(NAFSSR(NAFSSRConfig(width=8, num_blocks=1, scale=2)),
                        tmp_path / "a.safetensors")
        p2 = atomic_save_tensors(tmp_path / "b.safetensors", {"x": torch.ones(2)}, {"k": "v"})
        os.umask(0o077)
        p3 = save_model(_state_dict(), tmp_path / "c.safetensors")
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in (p1, p2, p3)] == [0o644, 0o644, 0o600]
    np.testing.assert_array_equal(load_file(str(p2))["x"].numpy(), np.ones(2, np.float32))


def test_safetensors_declaring_more_than_the_file_is_refused(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [10**9],
                               "data_offsets": [0, 4 * 10**9]}}).encode()
    path = tmp_path / "bomb.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as info:
        read_checkpoint(path)
    _one_line(info)


def test_bad_tlc_train_size_argument(tmp_path):
    path = _safetensors_with(tmp_path)
    for bad in ((0, 0), (-30, 90), (30,)):
        with pytest.raises(InputError, match="tlc_train_size must be two positive integers"):
            load_model(path, tlc_train_size=bad)


def _broken_weights(tmp_path: Path, bad: float) -> Path:
    sd = _state_dict(3)
    sd["body.0.module.fusion.l_proj1.weight"][0, 0, 0, 0] = bad
    path = tmp_path / f"broken_{bad}.pth"
    torch.save({"params": sd}, path)
    return path


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_commands_refuse_non_finite_weights(tmp_path, capsys, bad):
    """upscale, evaluate --data and training from model.init all stop with one line."""
    from stereosr.io import write_image
    from stereosr.train.config import config_from_dict
    from stereosr.train.loop import build_model

    ckpt = _broken_weights(tmp_path, bad)
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    for n in ("s_L", "s_R"):
        write_image(tmp_path / "data" / f"{n}.png", rng.integers(0, 256, (8, 12, 3), np.uint8))
    runs = [["upscale", str(tmp_path / "data" / "s_L.png"), str(tmp_path / "data" / "s_R.png"),
             "-o", str(tmp_path / "out"), "--weights", str(ckpt)],
            ["evaluate", "--data", str(tmp_path / "data"), "--weights", str(ckpt), "--scale", "2"]]
    for argv in runs:
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert "body.0.module.fusion.l_proj1.weight" in err and "NaN or infinite" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    cfg = config_from_dict({"model": {"variant": "T", "width": 8, "num_blocks": 1,
                                      "scale": 2, "init": str(ckpt)}})
    with pytest.raises(CheckpointError, match="l_proj1.weight"):
        build_model(cfg)


@pytest.mark.parametrize("kind", ["float64-overflow", "float16-inf", "int64", "complex64"])
def test_weights_that_change_when_loaded_are_refused(tmp_path, kind):
    """Values that become infinite in float32 (a float64 1e300) and tensors that are not
    floating point (int64 truncates the weights, complex drops a part) would be cast without a
    word and give black or wrong images: refused, named."""
    sd = _state_dict()
    name = "intro.weight"
    if kind == "float64-overflow":
        sd = {k: v.double() for k, v in sd.items()}
        sd[name][0, 0, 0, 0] = 1e300
        assert torch.isfinite(sd[name]).all()  # finite where it is stored
    elif kind == "float16-inf":
        sd = {k: v.half() for k, v in sd.items()}
        sd[name][0, 0, 0, 0] = float("inf")
    else:
        sd[name] = sd[name].to(torch.int64 if kind == "int64" else torch.complex64)
    expected = {"float64-overflow": "beyond float32's range", "float16-inf": "infinite",
                "int64": "torch.int64", "complex64": "torch.complex64"}[kind]
    for msg in _refusals(tmp_path, tmp_path / "w.pth", sd):
        assert name in msg and expected in msg, msg


def test_checkpoint_read_by_content_not_by_name(tmp_path):
    """A torch.save file named .safetensors (and a safetensors file named .pth) is read as what
    it holds, giving the same weights."""
    sd = _state_dict()
    torch.save({"params": sd}, tmp_path / "a.safetensors")
    save_file(sd, tmp_path / "b.pth")
    for f in ("a.safetensors", "b.pth"):
        got = load_model(tmp_path / f, tlc=False).state_dict()
        assert all(torch.equal(got[k], sd[k]) for k in sd)


@pytest.mark.parametrize("content", ["empty", "foreign", "missing", "unknown-key"])
def test_unusable_state_dict_messages_name_the_file(tmp_path, content):
    sd = _state_dict()
    obj = {"empty": {}, "foreign": {"x": torch.zeros(3)},
           "missing": {k: v for k, v in sd.items() if k != "up.0.weight"},
           "unknown-key": {"weights": sd}}[content]
    pth = tmp_path / "mine.pth"
    torch.save(obj, pth)
    with pytest.raises(CheckpointError) as info:
        load_model(pth)
    msg = _one_line(info)
    assert msg.startswith(str(pth)), msg
    if content == "empty":
        assert "keys are (none" in msg


def test_safetensors_whose_header_length_starts_like_a_pickle_loads(tmp_path):
    """A safetensors header of 0x..80 bytes begins with the byte a pickle begins with."""
    import torch
    from safetensors.torch import save_file

    from stereosr.models.checkpoint import read_checkpoint

    path = tmp_path / "w.safetensors"
    for pad in range(400):
        save_file({"a": torch.ones(2)}, str(path), metadata={"x": "y" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    assert path.read_bytes()[:1] == b"\x80"
    tensors, meta = read_checkpoint(path)
    assert torch.equal(tensors["a"], torch.ones(2)) and meta["x"].startswith("y")


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_wrapper_prefixes_of_compiled_and_parallel_models(tmp_path, prefix):
    """State dicts saved from a torch.compile'd (and/or DDP-wrapped) model load unchanged."""
    sd = _state_dict()
    torch.save({"params": {prefix + k: v for k, v in sd.items()}}, tmp_path / "c.pth")
    got = load_model(tmp_path / "c.pth", tlc=False).state_dict()
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)
