"""Training checkpoints: optimizer and RNG round trips, atomic files, pruning, refusals."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from stereosr.errors import CheckpointError
from stereosr.train.state import (
    capture_rng,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_training_state,
    optimizer_from_flat,
    optimizer_to_flat,
    prune_checkpoints,
    restore_rng,
    save_training_state,
)


def _setup(seed: int = 0) -> tuple[nn.Module, torch.optim.AdamW]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.9), weight_decay=0.01)
    return model, opt


def _step(model: nn.Module, opt: torch.optim.Optimizer, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(4, 5, generator=g), torch.randn(4, 2, generator=g)
    opt.zero_grad()
    ((model(x) - y) ** 2).mean().backward()
    opt.step()


def test_optimizer_round_trip_continues_identically() -> None:
    model, opt = _setup()
    for s in range(3):
        _step(model, opt, s)
    tensors, info = optimizer_to_flat(opt)
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    import json

    info = json.loads(json.dumps(info))  # the JSON part really is JSON
    model2, opt2 = _setup(seed=1)
    model2.load_state_dict(model.state_dict())
    optimizer_from_flat(opt2, tensors, info)
    _step(model, opt, 10)
    _step(model2, opt2, 10)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    assert opt2.param_groups[0]["betas"] == (0.9, 0.9)


def test_rng_round_trip() -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.random()
    np.random.randn()  # leaves a cached Gaussian in NumPy's legacy state
    torch.rand(2)
    tensors, scalars = capture_rng()
    first = (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist(),
             random.gauss(0, 1))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng(tensors, scalars)
    again = (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist(),
             random.gauss(0, 1))
    assert first == again


def test_checkpoint_files(tmp_path: Path) -> None:
    model, opt = _setup()
    _step(model, opt, 0)
    for it in (10, 20, 30, 40):
        save_training_state(checkpoint_path(tmp_path, it), params=model.state_dict(),
                            params_ema={k: v * 2 for k, v in model.state_dict().items()},
                            optimizer=opt, loss_state={"q.stat": torch.arange(3.0)},
                            meta={"counters": {"iteration": it, "note": "x"}})
    assert [i for i, _ in list_checkpoints(tmp_path)] == [10, 20, 30, 40]
    removed = prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in removed] == ["iter_00000010.safetensors", "iter_00000020.safetensors"]
    assert [i for i, _ in list_checkpoints(tmp_path)] == [30, 40]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.suffix == ".tmp"]
    st = load_training_state(latest_checkpoint(tmp_path))  # type: ignore[arg-type]
    assert st.iteration == 40
    for k, v in model.state_dict().items():
        assert torch.equal(st.params[k], v) and torch.equal(st.params_ema[k], 2 * v)
    assert torch.equal(st.loss["q.stat"], torch.arange(3.0))
    assert st.meta["counters"]["note"] == "x"
    assert "torch" in st.rng and "numpy_keys" in st.rng


def test_refuses_foreign_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    plain = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="not a stereosr training checkpoint"):
        load_training_state(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="not a readable training checkpoint"):
        load_training_state(junk)
