"""Checkpoint formats, architecture detection, safe loading and conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from stereosr.cli import main
from stereosr.errors import CheckpointError
from stereosr.models import NAFSSR, NAFSSRConfig, forward_6ch
from stereosr.models.checkpoint import (
    config_from_state_dict,
    convert_checkpoint,
    load_model,
    save_model,
)
from stereosr.models.tlc import tlc_train_size


def _random_model(width: int = 8, blocks: int = 2, scale: int = 4) -> NAFSSR:
    torch.manual_seed(width + blocks + scale)
    model = NAFSSR(NAFSSRConfig(width=width, num_blocks=blocks, scale=scale))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return model


def _outputs(model: NAFSSR, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return forward_6ch(model.eval(), x)


@pytest.mark.parametrize("wrap", ["params", "params_ema", "state_dict", "bare", "module"])
def test_official_wrappers_load(tmp_path, wrap):
    ref = _random_model()
    sd = ref.state_dict()
    if wrap == "bare":
        obj = sd
    elif wrap == "module":
        obj = {"params": {f"module.{k}": v for k, v in sd.items()}}
    else:
        obj = {wrap: sd}
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    model = load_model(path, device="cpu", tlc=False)
    for k, v in sd.items():
        assert torch.equal(model.state_dict()[k], v), k
    assert not model.training


def test_params_ema_preferred_and_key_selectable(tmp_path):
    a, b = _random_model(), _random_model(blocks=2, width=8, scale=4)
    torch.nn.init.constant_(b.intro.bias, 0.5)
    path = tmp_path / "both.pth"
    torch.save({"params": a.state_dict(), "params_ema": b.state_dict()}, path)
    assert torch.equal(load_model(path, tlc=False).intro.bias, b.intro.bias)
    assert torch.equal(load_model(path, tlc=False, key="params").intro.bias, a.intro.bias)


@pytest.mark.parametrize("width,blocks,scale", [(8, 2, 4), (12, 3, 2), (16, 1, 3)])
def test_architecture_derived_from_tensors(width, blocks, scale):
    cfg = config_from_state_dict(_random_model(width, blocks, scale).state_dict())
    assert (cfg.width, cfg.num_blocks, cfg.scale) == (width, blocks, scale)


def test_official_pth_to_safetensors_round_trip(tmp_path, data_dir, golden):
    out = convert_checkpoint(data_dir / "nafssr_t_x4_random.pth", tmp_path / "t.safetensors",
                             metadata={"source": "fixture"})
    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["variant"] == "T" and meta["scale"] == "4" and meta["width"] == "48"
    assert meta["num_blocks"] == "16" and meta["tlc_train_size"] == "[30, 90]"
    assert meta["converted_from"] == "nafssr_t_x4_random.pth" and meta["source"] == "fixture"
    a = load_model(data_dir / "nafssr_t_x4_random.pth")
    b = load_model(out)
    x = torch.from_numpy(golden["lr_1"])
    ya, yb = _outputs(a, x), _outputs(b, x)
    assert torch.equal(ya, yb)
    assert np.abs(yb.numpy() - golden["sr_1"]).max() <= 1e-4


def test_train_size_metadata_drives_tlc(tmp_path):
    path = save_model(_random_model(), tmp_path / "m.safetensors", train_size=(40, 100))
    assert tlc_train_size(load_model(path)) == (40, 100)
    assert tlc_train_size(load_model(path, tlc_train_size=(20, 20))) == (20, 20)
    assert tlc_train_size(load_model(path, tlc=False)) is None


def test_save_refuses_to_overwrite(tmp_path):
    path = save_model(_random_model(), tmp_path / "m.safetensors")
    before = path.read_bytes()
    with pytest.raises(Exception, match="already exists"):
        save_model(_random_model(width=12), path)
    assert path.read_bytes() == before


class _Payload:
    def __reduce__(self):  # would run code if unpickled without weights_only
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_pickle_with_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"params": _random_model().state_dict(), "hook": _Payload()}, path)
    with pytest.raises(CheckpointError, match="never executes pickled code"):
        load_model(path)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_corrupt_files_are_refused(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_model(path)


def test_foreign_state_dict_names_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"params": {"conv.weight": torch.zeros(3, 3, 3, 3)}}, path)
    with pytest.raises(CheckpointError, match="missing .*intro.weight"):
        load_model(path)
    sd = _random_model().state_dict()
    sd["extra.weight"] = torch.zeros(1)
    del sd["body.1.module.fusion.beta"]
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert "body.1.module.fusion.beta" in str(err.value) and "extra.weight" in str(err.value)


def test_unknown_name_or_missing_file():
    with pytest.raises(CheckpointError, match="not a registered model name"):
        load_model("no-such-model-or-file")


def test_convert_cli(tmp_path, data_dir, capsys):
    out = tmp_path / "o.safetensors"
    assert main(["convert", str(data_dir / "nafssr_t_x4_random.pth"), str(out)]) == 0
    assert '"variant": "T"' in capsys.readouterr().out
    assert main(["convert", str(data_dir / "nafssr_t_x4_random.pth"), str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and len(err.strip().splitlines()) == 1
    evil = tmp_path / "evil.pth"
    torch.save({"x": _Payload()}, evil)
    assert main(["convert", str(evil), str(tmp_path / "e.safetensors")]) == 2
    assert "refused" in capsys.readouterr().err
    assert not (tmp_path / "e.safetensors").exists()


def test_flat_training_checkpoint_prefers_ema(tmp_path):
    from safetensors.torch import save_file

    a, b = _random_model(), _random_model()
    torch.nn.init.constant_(b.intro.bias, 0.25)
    flat = {f"params.{k}": v for k, v in a.state_dict().items()}
    flat.update({f"params_ema.{k}": v for k, v in b.state_dict().items()})
    flat["optim.state.0.exp_avg"] = torch.zeros(3)
    save_file({k: v.contiguous() for k, v in flat.items()}, str(tmp_path / "ckpt.safetensors"))
    m = load_model(tmp_path / "ckpt.safetensors", tlc=False)
    assert torch.equal(m.intro.bias, b.intro.bias)
    m = load_model(tmp_path / "ckpt.safetensors", tlc=False, key="params")
    assert torch.equal(m.intro.bias, a.intro.bias)
