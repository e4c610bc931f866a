"""The model against golden vectors made with the official NAFSSR code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stereosr.models import build_nafssr, enable_tlc, forward_6ch
from stereosr.models.checkpoint import load_model


@pytest.mark.parametrize("case", [0, 1, 2])
def test_official_outputs_reproduced(data_dir, golden, case):
    model = load_model(data_dir / "nafssr_t_x4_random.pth", device="cpu")
    lr = torch.from_numpy(golden[f"lr_{case}"])
    with torch.no_grad():
        sr = forward_6ch(model, lr).numpy()
    ref = golden[f"sr_{case}"]
    assert sr.shape == ref.shape
    assert np.abs(sr - ref).max() <= 1e-4


def test_strict_load_of_official_keys(data_dir):
    sd = torch.load(data_dir / "nafssr_t_x4_random.pth", weights_only=True)["params"]
    model = build_nafssr("T", 4)
    assert set(model.state_dict()) == set(sd)
    model.load_state_dict(sd, strict=True)


def test_pair_api_equals_6ch_adapter(data_dir, golden):
    model = load_model(data_dir / "nafssr_t_x4_random.pth", device="cpu")
    lr = torch.from_numpy(golden["lr_2"])
    with torch.no_grad():
        l, r = model(lr[:, :3], lr[:, 3:])
        both = forward_6ch(model, lr)
    assert torch.equal(torch.cat([l, r], 1), both)


def test_without_tlc_differs_only_above_window(data_dir, golden):
    sd = torch.load(data_dir / "nafssr_t_x4_random.pth", weights_only=True)["params"]
    glob = build_nafssr("T", 4).eval()
    glob.load_state_dict(sd)
    local = enable_tlc(build_nafssr("T", 4).eval())
    local.load_state_dict(sd)
    with torch.no_grad():
        small = torch.from_numpy(golden["lr_0"])  # 30x90 <= 45x135: global path
        assert torch.allclose(forward_6ch(glob, small), forward_6ch(local, small), atol=1e-5)
        big = torch.from_numpy(golden["lr_1"])  # 50x150: local pooling changes the result
        assert (forward_6ch(glob, big) - forward_6ch(local, big)).abs().max() > 1e-3
