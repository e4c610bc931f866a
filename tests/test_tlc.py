"""TLC: local pooling against a plain average-pool reference, global equivalence when small."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stereosr.models import NAFSSR, NAFSSRConfig, disable_tlc, enable_tlc
from stereosr.models.pooling import LocalAvgPool2d, local_avg_pool
from stereosr.models.tlc import tlc_kernel, tlc_train_size


def _reference(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    h, w = x.shape[-2:]
    if kernel[0] >= h and kernel[1] >= w:
        return F.adaptive_avg_pool2d(x, 1)
    k1, k2 = min(h, kernel[0]), min(w, kernel[1])
    out = F.avg_pool2d(x, (k1, k2), stride=1)
    dh, dw = h - out.shape[-2], w - out.shape[-1]
    return F.pad(out, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), mode="replicate")


@pytest.mark.parametrize("size", [(7, 9), (10, 30), (12, 9), (20, 31), (3, 40)])
def test_local_pool_matches_avg_pool(size):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    for kernel in [(5, 12), (4, 4), (7, 20), (50, 50)]:
        assert torch.allclose(local_avg_pool(x, kernel), _reference(x, kernel), atol=1e-10)


def test_kernel_rule():
    assert tlc_kernel((30, 90)) == (45, 135)
    assert tlc_kernel((64, 64)) == (96, 96)


def test_tlc_equals_global_pooling_on_small_inputs():
    torch.manual_seed(1)
    model = NAFSSR(NAFSSRConfig(width=8, num_blocks=2, scale=2)).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    l, r = torch.rand(1, 3, 12, 20), torch.rand(1, 3, 12, 20)
    with torch.no_grad():
        ref = model(l, r)
        enable_tlc(model, (8, 14))  # window 12x21 >= 12x20: global mean
        assert tlc_train_size(model) == (8, 14)
        out = model(l, r)
        assert torch.allclose(out[0], ref[0], atol=1e-5)
        enable_tlc(model, (4, 6))  # window 6x9 < 12x20: local
        assert not torch.allclose(model(l, r)[0], ref[0], atol=1e-3)
        disable_tlc(model)
        assert tlc_train_size(model) is None
        assert torch.allclose(model(l, r)[0], ref[0], atol=1e-6)


def test_enable_replaces_every_pool():
    model = enable_tlc(NAFSSR(NAFSSRConfig(width=8, num_blocks=3)))
    pools = [m for m in model.modules() if isinstance(m, LocalAvgPool2d)]
    assert len(pools) == 3 and all(p.kernel == (45, 135) for p in pools)
    with pytest.raises(ValueError):
        enable_tlc(model, (0, 5))
