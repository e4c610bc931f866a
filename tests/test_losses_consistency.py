"""Stereo consistency loss: zero on consistent pairs, values against a plain numpy warp."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stereosr.errors import InputError
from stereosr.losses import (
    StereoConsistencyLoss,
    attention_consistency_loss,
    disparity_consistency_loss,
    sample_along_rows,
)


def _consistent_pair(d: int, b: int = 2, h: int = 6, w: int = 20,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Left pixel x shows the right pixel x - d (constant integer disparity d)."""
    base = torch.rand(b, 3, h, w + d, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64)
    return base[..., :w].contiguous(), base[..., d:d + w].contiguous()


def _np_left_from_right(left: np.ndarray, right: np.ndarray, disp: np.ndarray,
                        distance: str = "l1") -> float:
    """Plain reference: np.interp per row, mean over pixels with a known disparity (finite,
    > 0) whose source lies in the image."""
    b, c, h, w = left.shape
    total, count = 0.0, 0
    xs = np.arange(w, dtype=np.float64)
    for bi in range(b):
        for y in range(h):
            with np.errstate(invalid="ignore"):
                src = xs - disp[bi, y]
                ok = np.isfinite(src) & (disp[bi, y] > 0) & (src >= 0) & (src <= w - 1)
            for ch in range(c):
                warped = np.interp(np.where(ok, src, 0.0), xs, right[bi, ch, y])
                diff = left[bi, ch, y] - warped
                e = np.abs(diff) if distance == "l1" else diff ** 2
                total += float(e[ok].sum())
                count += int(ok.sum())
    return total / max(count, 1)


@pytest.mark.parametrize("d", [1, 5])
def test_zero_for_consistent_pair(d: int) -> None:
    left, right = _consistent_pair(d)
    assert disparity_consistency_loss(left, right, float(d)).item() < 1e-12
    assert disparity_consistency_loss(left, right, d, disparity_right=d).item() < 1e-12
    wrong = disparity_consistency_loss(left, right, float(d + 2)).item()
    assert wrong > 0.05


def test_zero_for_subpixel_disparity_on_linear_rows() -> None:
    """Rows linear in x are reproduced exactly by linear interpolation at any disparity."""
    w, d = 16, 2.5
    x = torch.arange(w, dtype=torch.float64)
    slope = torch.tensor([0.01, 0.03, -0.02], dtype=torch.float64).view(1, 3, 1, 1)
    offset = torch.rand(1, 3, 4, 1, dtype=torch.float64)
    left = offset + slope * x
    right = offset + slope * (x + d)
    assert disparity_consistency_loss(left, right, d).item() < 1e-12
    assert disparity_consistency_loss(left, right, d + 1.0).item() > 1e-3


@pytest.mark.parametrize("distance", ["l1", "mse"])
def test_values_match_numpy_with_disparity_map(distance: str) -> None:
    g = torch.Generator().manual_seed(3)
    left = torch.rand(2, 3, 5, 12, generator=g, dtype=torch.float64)
    right = torch.rand(2, 3, 5, 12, generator=g, dtype=torch.float64)
    disp = torch.rand(2, 1, 5, 12, generator=g, dtype=torch.float64) * 6 - 1
    disp[0, 0, 2, 3] = float("inf")  # unknown disparity: excluded
    got = disparity_consistency_loss(left, right, disp, distance=distance).item()
    want = _np_left_from_right(left.numpy(), right.numpy(), disp[:, 0].numpy(), distance)
    assert got == pytest.approx(want, rel=1e-10)
    module = StereoConsistencyLoss(distance)
    assert module(left, right, disp).item() == pytest.approx(want, rel=1e-10)


def test_mask_and_both_directions() -> None:
    g = torch.Generator().manual_seed(4)
    left = torch.rand(1, 3, 4, 10, generator=g, dtype=torch.float64)
    right = torch.rand(1, 3, 4, 10, generator=g, dtype=torch.float64)
    mask = torch.ones(1, 1, 4, 10)
    mask[..., :2, :] = 0
    full = disparity_consistency_loss(left[..., 2:, :], right[..., 2:, :], 1.5)
    masked = disparity_consistency_loss(left, right, 1.5, mask=mask)
    assert masked.item() == pytest.approx(full.item(), rel=1e-12)
    # Right from left with disparity d equals left from right on mirrored images.
    r2 = disparity_consistency_loss(right.flip(-1), left.flip(-1), 2.0)
    both = disparity_consistency_loss(left, right, 2.0, disparity_right=2.0)
    one = disparity_consistency_loss(left, right, 2.0)
    assert both.item() == pytest.approx(0.5 * (one.item() + r2.item()), rel=1e-12)


def test_gradients_finite() -> None:
    g = torch.Generator().manual_seed(5)
    left = torch.rand(1, 3, 4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    right = torch.rand(1, 3, 4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    disp = (torch.rand(1, 1, 4, 9, generator=g, dtype=torch.float64) * 3 + 0.25)
    disp.requires_grad_(True)
    loss = disparity_consistency_loss(left, right, disp, distance="mse")
    loss.backward()
    for t in (left, right, disp):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda a, b: disparity_consistency_loss(a, b, disp.detach(), distance="mse"),
        (left.detach().requires_grad_(), right.detach().requires_grad_()))
    # Nothing valid (disparity pushes every source outside): 0 but still differentiable.
    empty = disparity_consistency_loss(left, right, 100.0)
    assert empty.item() == 0.0 and empty.requires_grad


def test_attention_matches_disparity_and_numpy() -> None:
    d, w = 2, 10
    left, right = _consistent_pair(d, b=1, h=3, w=w, seed=7)
    att = torch.zeros(1, 3, w, w, dtype=torch.float64)
    for x in range(w):
        att[0, :, x, max(x - d, 0)] = 1.0
    mask = torch.zeros(1, 1, 3, w)
    mask[..., d:] = 1
    assert attention_consistency_loss(left, right, att, mask=mask).item() < 1e-12
    # A soft attention map against a plain loop.
    g = torch.Generator().manual_seed(8)
    soft = torch.softmax(torch.randn(1, 3, w, w, generator=g, dtype=torch.float64), dim=-1)
    got = StereoConsistencyLoss()(left, right, attention=soft).item()
    ln, rn, an = left.numpy(), right.numpy(), soft.numpy()
    want = np.mean([abs(ln[0, c, y, x] - sum(an[0, y, x, z] * rn[0, c, y, z] for z in range(w)))
                    for c in range(3) for y in range(3) for x in range(w)])
    assert got == pytest.approx(want, rel=1e-10)
    both = attention_consistency_loss(left, right, soft, attention_l2r=soft)
    assert both.item() > 0


def test_sample_along_rows_validity() -> None:
    src = torch.arange(5, dtype=torch.float32).view(1, 1, 1, 5)
    x = torch.tensor([[[[-0.5, 0.0, 1.25, 4.0, float("nan")]]]])
    vals, valid = sample_along_rows(src, x)
    assert valid.tolist() == [[[[False, True, True, True, False]]]]
    assert vals[0, 0, 0, 1:4].tolist() == [0.0, 1.25, 4.0]


def test_bad_input() -> None:
    a = torch.rand(1, 3, 4, 6)
    with pytest.raises(InputError, match="same shape"):
        disparity_consistency_loss(a, torch.rand(1, 3, 4, 7), 1.0)
    with pytest.raises(InputError, match="disparity"):
        disparity_consistency_loss(a, a, torch.zeros(1, 1, 3, 6))
    with pytest.raises(InputError, match="attention"):
        attention_consistency_loss(a, a, torch.zeros(1, 4, 6, 5))
    with pytest.raises(InputError, match="either"):
        StereoConsistencyLoss()(a, a)
    with pytest.raises(InputError, match="one of"):
        StereoConsistencyLoss("huber")


def test_loss_and_metric_share_the_known_disparity_rule() -> None:
    """0 (KITTI), inf and NaN (Middlebury / scikit-image) and negative disparities are unknown
    for the loss and for the metric alike; only finite, positive disparities count."""
    from stereosr.metrics import valid_disparity_mask
    from stereosr.stereo import known_disparity

    d = np.full((4, 16), 2.0)
    d[0, 5], d[1, 6], d[2, 7], d[3, 8] = 0.0, np.inf, np.nan, -1.0
    want = np.ones((4, 16), bool)
    want[0, 5] = want[1, 6] = want[2, 7] = want[3, 8] = False
    np.testing.assert_array_equal(known_disparity(d), want)
    np.testing.assert_array_equal(known_disparity(torch.from_numpy(d)).numpy(), want)
    # metric: unknown pixels are never valid (others may be out of bounds or occluded)
    mask = valid_disparity_mask(d, occlusion_tol=None)
    assert not mask[~want].any() and mask[:, 2:][want[:, 2:]].all()
    # loss: an error put only on the unknown pixels does not count at all
    left, right = _consistent_pair(2, b=1, h=4, w=16)
    bad = left.clone()
    bad[0, :, ~torch.from_numpy(want)] += 0.5
    dt = torch.from_numpy(d)[None, None]
    assert disparity_consistency_loss(bad, right, dt).item() < 1e-12
    assert disparity_consistency_loss(bad, right, 2.0).item() > 1e-3  # ... where it is known
