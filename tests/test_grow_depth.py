"""scripts/grow_depth.py: a deeper NAFSSR that starts with the trained model's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from module_utils import load_repo_module
from safetensors import safe_open

from stereosr.models.checkpoint import load_model, save_model
from stereosr.models.nafssr import NAFSSR, NAFSSRConfig


def _trained_like(num_blocks: int = 2) -> NAFSSR:
    """A small NAFSSR whose residual scales are non-zero, as after training."""
    torch.manual_seed(0)
    model = NAFSSR(NAFSSRConfig(width=8, num_blocks=num_blocks, scale=2))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.copy_(torch.randn_like(p) * 0.5)
    return model.eval()


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_grown_model_gives_the_trained_outputs(factor: int) -> None:
    grow = load_repo_module("scripts/grow_depth.py")
    model = _trained_like().double()
    deep = grow.grow_depth(model, factor, seed=1).double().eval()
    assert deep.config.num_blocks == 2 * factor
    g = torch.Generator().manual_seed(2)
    left, right = torch.rand(2, 1, 3, 12, 20, generator=g, dtype=torch.float64)
    with torch.no_grad():
        for a, b in zip(deep(left, right), model(left, right)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # the trained blocks moved to every factor-th place; the new ones are real blocks (random
    # weights) whose residual scales alone are zero
    sd, new = model.state_dict(), deep.state_dict()
    for key, value in sd.items():
        if key.startswith("body."):
            i, rest = key.split(".", 2)[1:]
            key = f"body.{int(i) * factor}.{rest}"
        torch.testing.assert_close(new[key], value, rtol=0, atol=0)
    if factor > 1:
        assert new["body.1.module.fusion.gamma"].abs().max() == 0
        assert new["body.1.module.blk.beta"].abs().max() == 0
        assert new["body.1.module.blk.conv1.weight"].abs().max() > 0
        assert new["body.1.module.fusion.l_proj1.weight"].abs().max() > 0


def test_new_blocks_learn_from_the_first_step() -> None:
    """Zero residual scales get gradients, so training moves the new blocks off identity."""
    grow = load_repo_module("scripts/grow_depth.py")
    deep = grow.grow_depth(_trained_like(), 2).train()
    g = torch.Generator().manual_seed(3)
    left, right = torch.rand(2, 2, 3, 12, 20, generator=g)
    out_l, out_r = deep(left, right)
    (out_l.mean() + out_r.square().mean()).backward()
    scales = dict(deep.named_parameters())
    assert scales["body.1.module.blk.beta"].grad.abs().max() > 0
    assert scales["body.1.module.fusion.beta"].grad.abs().max() > 0


def test_cli_writes_a_loadable_model_with_its_history(tmp_path: Path, capsys) -> None:
    grow = load_repo_module("scripts/grow_depth.py")
    src = save_model(_trained_like(), tmp_path / "trained.safetensors",
                     {"stages": [{"config": "a", "iterations": 5, "lr": 1e-3, "hours": 0.1}],
                      "training_photos": ["x.png"]})
    out = tmp_path / "deep.safetensors"
    assert grow.main(["--weights", str(src), "--factor", "2", "--out", str(out)]) == 0
    assert load_model(out, device="cpu").config.num_blocks == 4
    meta = safe_open(str(out), "pt").metadata()
    assert json.loads(meta["stages"])[0]["config"] == "a"
    assert json.loads(meta["training_photos"]) == ["x.png"]
    # an existing output is not replaced without --overwrite; a bad factor is refused
    before = out.read_bytes()
    assert grow.main(["--weights", str(src), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    folder = tmp_path / "d.safetensors"
    folder.mkdir()
    assert grow.main(["--weights", str(src), "--out", str(folder), "--overwrite"]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert grow.main(["--weights", str(src), "--factor", "0", "--out",
                      str(tmp_path / "x.safetensors")]) == 2
    assert out.read_bytes() == before and not (tmp_path / "x.safetensors").exists()
