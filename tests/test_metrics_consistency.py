"""Stereo consistency by disparity warping, on synthetic scenes and the Middlebury motorcycle."""

from __future__ import annotations

import numpy as np
import pytest

from stereosr.errors import InputError
from stereosr.metrics import (
    disparity_mae,
    ntire_perceptual_score,
    stereo_consistency,
    valid_disparity_mask,
    warp_error,
    warp_right_to_left,
)


@pytest.fixture(scope="module")
def motorcycle() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from skimage.data import stereo_motorcycle

    return stereo_motorcycle()


def _mask_reference(d: np.ndarray, tol: float) -> np.ndarray:
    """Plain loops: known, in bounds, no known pixel to the right lands within tol of it."""
    h, w = d.shape
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            dx = d[y, x]
            if not (np.isfinite(dx) and dx > 0):
                continue
            xr = x - dx
            if xr < 0 or xr > w - 1:
                continue
            occluded = False
            for x2 in range(x + 1, w):
                d2 = d[y, x2]
                if np.isfinite(d2) and d2 > 0 and x2 - d2 < xr + tol:
                    occluded = True
                    break
            out[y, x] = not occluded
    return out


def test_warp_recovers_shifted_view() -> None:
    rng = np.random.default_rng(0)
    w = 40
    ramp = np.tile(np.arange(w, dtype=np.float64)[None, :, None] * 3.0, (5, 1, 3))
    right = ramp + rng.normal(0, 1e-9, ramp.shape)
    d = np.full((5, w), 2.25)  # left pixel x shows right pixel x - 2.25
    warped = warp_right_to_left(right, d)
    x = np.arange(w)
    expected = (x - 2.25) * 3.0
    ok = x - 2.25 >= 0
    np.testing.assert_allclose(warped[:, ok, 0], np.broadcast_to(expected[ok], (5, ok.sum())),
                               atol=1e-6)
    assert np.all(warped[:, ~ok] == 0)


def test_occlusion_mask_synthetic_scene() -> None:
    w = 60
    d = np.full((3, w), 2.0)
    d[:, 30:45] = 10.0  # foreground band: hides background pixels 22..29 in the right view
    d[1, 50] = np.inf
    d[2, 51] = np.nan
    d[2, 52] = -1.0
    mask = valid_disparity_mask(d, occlusion_tol=0.5)
    np.testing.assert_array_equal(mask, _mask_reference(d, 0.5))
    row = mask[0]
    assert not row[:2].any()  # x - 2 < 0: outside the right view
    assert row[2:22].all() and not row[22:30].any()  # 30 - 10 = 20 < x - 2 + 0.5
    assert row[30:].all()
    assert not mask[1, 50] and not mask[2, 51] and not mask[2, 52]


def test_mask_matches_loops_on_real_disparity(motorcycle: tuple[np.ndarray, ...]) -> None:
    d = motorcycle[2][200:216, 100:400]
    np.testing.assert_array_equal(valid_disparity_mask(d), _mask_reference(d, 0.5))


def test_motorcycle_hr_is_consistent(motorcycle: tuple[np.ndarray, ...]) -> None:
    left, right, d = motorcycle
    err, mask = warp_error(left, right, d)
    # pinned: Middlebury 2014 Motorcycle at 741x500 (views differ by ~3 grey levels of exposure)
    assert err == pytest.approx(4.418, abs=0.01)
    assert mask.mean() == pytest.approx(0.823, abs=0.002)
    # a one-pixel mistake or a corrupted view is much less consistent
    for shift in (-2, -1, 1, 2):
        assert warp_error(left, np.roll(right, shift, axis=1), d)[0] > 1.75 * err
    noisy = np.clip(right + np.random.default_rng(0).normal(0, 12, right.shape), 0, 255)
    assert warp_error(left, noisy.astype(np.uint8), d)[0] > 1.75 * err
    # the occlusion test matters: without it the error is much larger
    no_occ, _ = warp_error(left, right, d, occlusion_tol=None)
    assert no_occ > 1.4 * err


def test_stereo_consistency_sr_vs_hr(motorcycle: tuple[np.ndarray, ...]) -> None:
    left, right, d = motorcycle
    same = stereo_consistency(left, right, left, right, d)
    assert same.excess == 0.0 and same.sr == same.hr
    blurred = ((right.astype(np.float64) + np.roll(right, 3, axis=1)) / 2).astype(np.uint8)
    worse = stereo_consistency(left, blurred, left, right, d)
    assert worse.excess > 2.0
    assert worse.as_dict()["valid_fraction"] == pytest.approx(0.823, abs=0.002)
    # float views in [0, 1] give the same numbers as uint8 ones
    f = stereo_consistency(left / 255.0, right / 255.0, left, right, d)
    assert f.sr == pytest.approx(same.sr, abs=1e-9)


def test_consistency_bad_input(motorcycle: tuple[np.ndarray, ...]) -> None:
    left, right, d = motorcycle
    with pytest.raises(InputError, match="disparity is"):
        warp_error(left, right, d[:-1])
    with pytest.raises(InputError, match="no valid"):
        warp_error(left, right, np.full(d.shape, np.inf))
    with pytest.raises(InputError, match="differ"):
        warp_error(left, right[:, :-1], d)


def test_ntire_score() -> None:
    a = np.array([[1.0, 2.0], [np.nan, 4.0]])
    b = np.array([[1.5, 2.0], [3.0, np.inf]])
    assert disparity_mae(a, b) == pytest.approx(0.25)
    assert ntire_perceptual_score(0.2, 0.1, a, b) == pytest.approx(1 - 0.1 - 0.05 - 0.25)
    with pytest.raises(InputError):
        ntire_perceptual_score(float("nan"), 0.1, a, b)
    with pytest.raises(InputError):
        disparity_mae(a, b[:1])
