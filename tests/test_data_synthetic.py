"""Synthetic stereo rendering: exact shifts, occlusion geometry, fractional disparities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stereosr.data.synthetic import (
    FIELD_KINDS,
    Blob,
    Layer,
    Planar,
    Smooth,
    occlusion_mask,
    random_scene,
    render_scene,
    synthesize_pair,
)
from stereosr.errors import InputError


def textured_photo(h: int, w: int, seed: int = 0, smooth: int = 1) -> np.ndarray:
    """Random RGB texture in [0, 1]; ``smooth`` > 1 makes it blockier then box-blurred."""
    rng = np.random.default_rng(seed)
    img = rng.random((h // smooth + 2, w // smooth + 2, 3))
    img = np.repeat(np.repeat(img, smooth, 0), smooth, 1)[:h, :w]
    for _ in range(2 if smooth > 1 else 0):
        k = smooth
        pad = np.pad(img, ((k, k), (k, k), (0, 0)), mode="edge")
        c = np.cumsum(np.cumsum(pad, 0), 1)
        c = np.pad(c, ((1, 0), (1, 0), (0, 0)))
        n = 2 * k + 1
        img = (c[n:, n:] - c[:-n, n:] - c[n:, :-n] + c[:-n, :-n])[:h, :w] / n**2
    return img.astype(np.float32)


@pytest.mark.parametrize("ss", [1, 2])
@pytest.mark.parametrize("d", [0, 7, 12])
def test_constant_disparity_is_a_pure_shift(ss: int, d: int) -> None:
    h, w = 20, 64
    photo = textured_photo(ss * (h + 8), ss * (w + 30))
    layers = [Layer(Planar(float(d)), texture_offset=(0, float(ss * 14)))]
    left, right, disp = render_scene(photo, layers, (h, w), supersample=ss)
    assert left.shape == right.shape == (h, w, 3) and left.dtype == np.float32
    np.testing.assert_array_equal(disp, np.full((h, w), d, np.float32))
    np.testing.assert_allclose(right[:, : w - d], left[:, d:], atol=2e-6)
    assert not occlusion_mask(disp)[:, d:].any() and occlusion_mask(disp)[:, :d].all()
    if d:
        assert np.abs(right[:, d:] - left[:, d:]).mean() > 0.05  # views really differ


def test_left_view_samples_the_photo() -> None:
    """With supersample 1 and an even disparity d, the left view is the photo shifted by
    d / 2 (no interpolation), so it can be checked against plain indexing."""
    h, w, m, d = 16, 40, 2, 8
    photo = textured_photo(h + 2 * m, w + 30, seed=4)
    left, right, _ = render_scene(photo, [Layer(Planar(float(d)), (0, 10.0))], (h, w),
                                  supersample=1, margin=m)
    # left pixel (y, x) shows u = x - d/2, i.e. photo[y + m, u + m + 10]
    np.testing.assert_allclose(left, photo[m:m + h, m + 10 - d // 2:m + 10 - d // 2 + w],
                               atol=1e-6)
    np.testing.assert_allclose(right, photo[m:m + h, m + 10 + d // 2:m + 10 + d // 2 + w],
                               atol=1e-6)


def brute_hidden(disp: np.ndarray, reach: float) -> np.ndarray:
    """Left pixels not visible in the right view, by comparing every pair of pixels in a row:
    hidden if x - d falls outside the view or a pixel with a larger disparity lands within
    less than ``reach`` pixels from it."""
    h, w = disp.shape
    hidden = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            t = x - disp[y, x]
            if t < -0.5 or t > w - 0.5:
                hidden[y, x] = True
                continue
            for x2 in range(w):
                if disp[y, x2] > disp[y, x] + 0.5 and abs(x2 - disp[y, x2] - t) < reach:
                    hidden[y, x] = True
                    break
    return hidden


def test_piecewise_layers_occlusions_and_correspondence() -> None:
    h, w, ss = 48, 96, 2
    photo = textured_photo(ss * (h + 8), ss * (w + 70), seed=2)
    bg = Layer(Planar(3.0), (0, 70.0))
    fg1 = Layer(Planar(15.0), (4, 30.0), Blob(40.0, 24.0, 14.0, 10.0, theta=0.3, power=3.0,
                                               harmonics=((3, 0.1, 0.5),)))
    fg2 = Layer(Planar(25.0), (2, 40.0), Blob(50.0, 20.0, 9.0, 12.0))
    left, right, disp = render_scene(photo, [bg, fg1, fg2], (h, w), supersample=ss)
    # z-order: where both objects cover the left pixel, the nearer one (d = 25) is seen
    ys, xs = np.mgrid[0:h, 0:w].astype(float)
    u = xs - 25 / 2
    both = fg1.mask.contains(xs - 15 / 2, ys) & fg2.mask.contains(u, ys)  # type: ignore
    assert both.sum() > 20
    win = np.lib.stride_tricks.sliding_window_view(np.pad(disp, 1, mode="edge"), (3, 3))
    interior = win.min(axis=(2, 3)) == win.max(axis=(2, 3))
    assert set(np.unique(disp[interior])) == {3.0, 15.0, 25.0}
    np.testing.assert_array_equal(disp[both & interior], 25.0)
    # every non-occluded pixel away from object outlines has its match at x - d
    # occlusion_mask flags every pixel with a nearer one landing less than half a pixel away,
    # and none without one landing less than 1.5 pixels away
    mask = occlusion_mask(disp)
    strict, loose = brute_hidden(disp, 0.5), brute_hidden(disp, 1.5)
    assert strict.sum() > 100  # the objects do occlude background
    assert not (strict & ~mask).any() and not (mask & ~loose).any()
    hidden = loose
    checked = 0
    for y in range(2, h - 2):
        for x in range(2, w - 2):
            win = disp[y - 2:y + 3, x - 2:x + 3]
            d = disp[y, x]
            if win.min() != win.max() or hidden[y - 2:y + 3, x - 2:x + 3].any():
                continue
            xr = x - int(d)
            if xr < 2:
                continue
            np.testing.assert_allclose(right[y, xr], left[y, x], atol=1e-5)
            checked += 1
    assert checked > 0.5 * h * w


def test_fractional_planar_and_smooth_disparities_match() -> None:
    h, w, ss = 40, 120, 2
    photo = textured_photo(ss * (h + 8), ss * (w + 80), seed=5, smooth=6)
    plane = Planar(9.3, gx=0.06, gy=0.05)
    smooth = Smooth(14.0, ((5.0, 1.0 / 150, 1.0 / 90, 0.4), (2.0, -1.0 / 70, 1.0 / 200, 2.0)))
    for field in (plane, smooth):
        left, right, disp = render_scene(photo, [Layer(field, (0, 90.0))], (h, w), ss)
        ys, xs = np.mgrid[0:h, 0:w].astype(float)
        xr = xs - disp
        ok = (xr >= 1) & (xr <= w - 2)
        x0 = np.floor(xr).astype(int)
        t = (xr - x0)[..., None]
        x0c = np.clip(x0, 0, w - 2)
        warped = right[ys.astype(int), x0c] * (1 - t) + right[ys.astype(int), x0c + 1] * t
        err = np.abs(warped - left)[ok].mean()
        wrong = np.abs(np.roll(warped, 1, axis=1) - left)[ok].mean()
        assert err < 0.004 and err < wrong / 4, (field, err, wrong)


def test_smooth_solve_inverts_the_projection() -> None:
    field = Smooth(20.0, ((6.0, 1 / 80, 1 / 60, 0.3), (3.0, 1 / 50, -1 / 90, 1.0)))
    x = np.linspace(-10, 300, 500)[None, :]
    y = np.arange(0, 50, 7.0)[:, None]
    for sigma in (0.5, -0.5):
        u, d = field.solve(x, y, sigma)
        exact = field(u, y)
        assert np.abs(d - exact).max() < 1e-3
        assert np.abs(u + sigma * exact - x).max() < 1e-3


def test_random_scenes_seeded_and_in_range() -> None:
    photo_hw = (2 * 90, 2 * 200)
    for seed in range(40):
        for kind in FIELD_KINDS:
            layers = random_scene(np.random.default_rng(seed), (80, 120), photo_hw, kind,
                                  max_disparity=40.0)
            lo, hi = layers[0].disparity.bounds((-3.0, 123.0), (-3.0, 83.0))
            assert -1e-6 <= lo and hi <= 40.0 + 1e-6
            assert layers[0].mask is None
            if kind != "layers":
                assert len(layers) == 1
            for fg in layers[1:]:
                b = fg.mask
                assert b is not None
                r = b.radius()
                f_lo, f_hi = fg.disparity.bounds((b.cx - r, b.cx + r), (b.cy - r, b.cy + r))
                assert f_lo > hi  # objects are in front of the background everywhere
                assert f_hi <= 40.0 + 1e-6
    photo = textured_photo(*photo_hw, seed=1)
    a = synthesize_pair(photo, (80, 120), np.random.default_rng(7))
    b = synthesize_pair(photo, (80, 120), np.random.default_rng(7))
    c = synthesize_pair(photo, (80, 120), np.random.default_rng(8))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.left, c.left)


def test_photo_too_small_and_bad_layers() -> None:
    with pytest.raises(InputError, match="too small"):
        random_scene(np.random.default_rng(0), (80, 120), (170, 250), "constant", 60.0)
    photo = textured_photo(40, 80)
    with pytest.raises(InputError, match="background without mask"):
        render_scene(photo, [Layer(Planar(2.0), mask=Blob(5, 5, 3, 3))], (10, 20))
    with pytest.raises(InputError, match="slope"):
        render_scene(photo, [Layer(Planar(2.0, gx=2.0))], (10, 20))
    assert math.isclose(Blob(0, 0, 3, 4).radius(), 5.0)
