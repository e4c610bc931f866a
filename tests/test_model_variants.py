"""Presets, parameter counts, gradients and stochastic depth."""

from __future__ import annotations

import pytest
import torch

from stereosr.models import NAFSSR, NAFSSRConfig, build_nafssr
from stereosr.models.blocks import DropPath, StereoBlock, layer_norm_2d

PARAMS = {  # published counts (x4, x2)
    "T": (460_656, 445_068),
    "S": (1_559_344, 1_538_572),
    "B": (6_796_464, 6_765_324),
    "L": (23_832_112, 23_790_604),
}


@pytest.mark.parametrize("variant", list(PARAMS))
@pytest.mark.parametrize("scale", [4, 2])
def test_parameter_counts(variant, scale):
    with torch.device("meta"):
        model = build_nafssr(variant, scale)
    n = sum(p.numel() for p in model.parameters())
    assert n == PARAMS[variant][0 if scale == 4 else 1]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_forward_backward_every_parameter_gets_gradient(scale):
    torch.manual_seed(0)
    model = NAFSSR(NAFSSRConfig(width=8, num_blocks=2, scale=scale))
    for name, p in model.named_parameters():  # zero-initialised beta/gamma block gradients
        if name.endswith(("beta", "gamma")):
            torch.nn.init.normal_(p, std=0.1)
    l, r = torch.rand(2, 3, 6, 10), torch.rand(2, 3, 6, 10)
    sl, sr = model(l, r)
    assert sl.shape == (2, 3, 6 * scale, 10 * scale)
    (sl.square().mean() + sr.abs().mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_zero_init_is_bilinear_plus_head():
    """With zero beta/gamma and a zero head, the output is exactly bilinear upsampling."""
    model = NAFSSR(NAFSSRConfig(width=8, num_blocks=1, scale=2)).eval()
    torch.nn.init.zeros_(model.up[0].weight)
    torch.nn.init.zeros_(model.up[0].bias)
    l, r = torch.rand(1, 3, 5, 7), torch.rand(1, 3, 5, 7)
    with torch.no_grad():
        sl, _sr = model(l, r)
    ref = torch.nn.functional.interpolate(l, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(sl, ref, atol=1e-6)


def test_layer_norm_matches_explicit_formula():
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    w, b = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    mu = x.mean(1, keepdim=True)
    var = (x - mu).pow(2).mean(1, keepdim=True)
    ref = w.view(1, -1, 1, 1) * (x - mu) / (var + 1e-6).sqrt() + b.view(1, -1, 1, 1)
    assert torch.allclose(layer_norm_2d(x, w, b), ref, atol=1e-10)


def test_drop_path_semantics():
    torch.manual_seed(0)
    blk = StereoBlock(8)
    for p in blk.parameters():
        torch.nn.init.normal_(p, std=0.2)
    dp = DropPath(0.25, blk)
    x_l, x_r = torch.randn(2, 8, 4, 6), torch.randn(2, 8, 4, 6)
    with torch.no_grad():
        y_l, y_r = blk(x_l, x_r)
        scaled = x_l + (y_l - x_l) / 0.75
        dp.train()
        skipped = kept = 0
        for _ in range(400):
            o_l, o_r = dp(x_l, x_r)
            if torch.equal(o_l, x_l) and torch.equal(o_r, x_r):
                skipped += 1
            else:
                assert torch.allclose(o_l, scaled, atol=1e-5)
                assert torch.allclose(o_r, x_r + (y_r - x_r) / 0.75, atol=1e-5)
                kept += 1
        assert 60 < skipped < 140  # binomial(400, 0.25): mean 100, sd ~8.7
        dp.eval()
        e_l, _ = dp(x_l, x_r)
        assert torch.equal(e_l, y_l)


def test_preset_drop_path_rates():
    assert build_nafssr("S", 4, num_blocks=1).config.drop_path == 0.1
    assert build_nafssr("B", 4, num_blocks=1).config.drop_path == 0.2
    assert build_nafssr("L", 4, num_blocks=1).config.drop_path == 0.3
    with pytest.raises(ValueError, match="unknown NAFSSR variant"):
        build_nafssr("X")


def test_view_shape_mismatch_is_an_error():
    model = NAFSSR(NAFSSRConfig(width=8, num_blocks=1))
    with pytest.raises(ValueError, match="same shape"):
        model(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))


def test_forward_intermediates_matches_forward_and_intro_conv():
    torch.manual_seed(3)
    model = NAFSSR(NAFSSRConfig(width=8, num_blocks=2, scale=2)).eval()
    l, r = torch.rand(1, 3, 5, 7), torch.rand(1, 3, 5, 7)
    with torch.no_grad():
        plain = model(l, r)
        views, feats = model.forward_intermediates(l, r, ["intro", "body.1"])
    for a, b in zip(views, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert model.feature_names() == ("intro", "body.0", "body.1")
    # the "intro" features are the first convolution of each view (a plain conv2d)
    want = torch.nn.functional.conv2d(r, model.intro.weight, model.intro.bias, padding=1)
    torch.testing.assert_close(feats["intro"][1], want, rtol=1e-5, atol=1e-6)
    assert feats["body.1"][0].shape == (1, 8, 5, 7)
    with pytest.raises(ValueError, match="body.2"):
        model.forward_intermediates(l, r, ["body.2"])
    # features keep the graph: a loss on them reaches the intro weights
    _, feats = model.forward_intermediates(l, r, ["body.0"])
    feats["body.0"][0].sum().backward()
    assert model.intro.weight.grad is not None and model.intro.weight.grad.abs().sum() > 0
