"""Paired crops, stereo-consistent augmentations and the deterministic sampler."""

from __future__ import annotations

import numpy as np
import pytest

from stereosr.data.augment import (
    StereoSample,
    augment_stereo,
    flip_swap,
    random_paired_crop,
    shift_margin,
    shift_right_view,
    shifted_crop,
    textured_crop,
    view_gain,
)
from stereosr.data.sampler import EpochPermutation, StepBatchSampler, sample_rng
from stereosr.degrade.bicubic import imresize
from stereosr.errors import InputError
from stereosr.train.data import CachedPair, PairCache, StereoPatchDataset


def block_mean(hr: np.ndarray, s: int) -> np.ndarray:
    """Box-filter downscale: commutes with flips and channel permutations."""
    h, w, c = hr.shape
    return hr.reshape(h // s, s, w // s, s, c).mean(axis=(1, 3))


def stereo_pair(h: int = 40, w: int = 120, d: int = 7, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """A rectified pair with constant disparity d: right[:, x] = left[:, x + d]."""
    scene = np.random.default_rng(seed).random((h, w + d, 3))
    return scene[:, :w].copy(), scene[:, d:d + w].copy()


def sample_of(hr_l: np.ndarray, hr_r: np.ndarray, s: int) -> StereoSample:
    return StereoSample(block_mean(hr_l, s), block_mean(hr_r, s), hr_l, hr_r)


def test_crop_takes_the_same_window_in_both_views_and_in_hr() -> None:
    s = 4
    hr_l, hr_r = stereo_pair(80, 240)
    src = sample_of(hr_l, hr_r, s)
    for seed in range(20):
        out = random_paired_crop(src, (6, 18), s, np.random.default_rng(seed))
        assert out.lr_left.shape == (6, 18, 3) and out.hr_left.shape == (24, 72, 3)
        # LR and HR crops are aligned: LR == box-downscale(HR crop).
        np.testing.assert_allclose(out.lr_left, block_mean(out.hr_left, s), atol=1e-12)
        np.testing.assert_allclose(out.lr_right, block_mean(out.hr_right, s), atol=1e-12)
        # Same window in both views: the disparity relation survives the crop.
        np.testing.assert_array_equal(out.hr_right[:, :-7], out.hr_left[:, 7:])


def test_crop_too_large() -> None:
    src = sample_of(*stereo_pair(16, 48), 4)
    with pytest.raises(InputError, match="larger than the LR image"):
        random_paired_crop(src, (5, 12), 4, np.random.default_rng(0))
    out = random_paired_crop(src, (4, 12), 4, np.random.default_rng(0))  # exactly fits
    np.testing.assert_array_equal(out.hr_left, src.hr_left)


def half_textured_sample(s: int = 4) -> StereoSample:
    """Left half of the scene flat grey, right half noise."""
    scene = np.random.default_rng(0).random((40, 243, 3))
    scene[:, :120] = 0.5
    return sample_of(scene[:, :240], scene[:, 3:], s)


def test_textured_crop_keeps_the_draw_with_the_most_gradient_energy() -> None:
    src = half_textured_sample()
    for seed in range(10):
        # One try is the plain random crop, with the same draws.
        one = textured_crop(src, (5, 12), 4, np.random.default_rng(seed), tries=1)
        plain = random_paired_crop(src, (5, 12), 4, np.random.default_rng(seed))
        for a, b in zip(one, plain):
            np.testing.assert_array_equal(a, b)
        # Several tries: replay the draws and pick the best by the documented energy, mean
        # sqrt(gx^2 + gy^2) of forward differences of the channel mean, written out here.
        rng = np.random.default_rng(seed)
        draws = [random_paired_crop(src, (5, 12), 4, rng) for _ in range(4)]

        def energy_of(c: StereoSample) -> float:
            a = c.lr_left.mean(axis=2)
            gx = a[:-1, 1:] - a[:-1, :-1]
            gy = a[1:, :-1] - a[:-1, :-1]
            return float(np.hypot(gx, gy).mean())

        energy = [energy_of(c) for c in draws]
        best = textured_crop(src, (5, 12), 4, np.random.default_rng(seed), tries=4)
        np.testing.assert_array_equal(best.hr_right, draws[int(np.argmax(energy))].hr_right)
        # The stereo window relation survives (same window in both views).
        np.testing.assert_array_equal(best.hr_right[:, :-3], best.hr_left[:, 3:])


def test_textured_crop_prefers_detail_over_flat_regions() -> None:
    src = half_textured_sample()
    def flat_share(tries: int) -> float:
        crops = [textured_crop(src, (5, 12), 4, np.random.default_rng(i), tries)
                 for i in range(200)]
        return float(np.mean([np.ptp(c.lr_left) == 0 for c in crops]))
    assert 0.3 < flat_share(1) < 0.6
    assert flat_share(4) < 0.1
    with pytest.raises(InputError, match="tries must be a positive integer"):
        textured_crop(src, (5, 12), 4, np.random.default_rng(0), tries=0)


def test_flip_swap_keeps_a_valid_rectified_pair() -> None:
    d = 5
    hr_l, hr_r = stereo_pair(8, 30, d)
    out = flip_swap(StereoSample(hr_l, hr_r, hr_l, hr_r))
    # Before: right[:, x] = left[:, x + d]. A mirrored pair without the swap would have the
    # opposite sign; with the swap the relation holds again with the same disparity.
    np.testing.assert_array_equal(out.lr_right[:, :-d], out.lr_left[:, d:])
    mirrored_only = (hr_l[:, ::-1], hr_r[:, ::-1])
    assert not np.array_equal(mirrored_only[1][:, :-d], mirrored_only[0][:, d:])
    np.testing.assert_array_equal(out.lr_left, hr_r[:, ::-1])


def test_augmentations_are_shared_by_both_views() -> None:
    s = 2
    hr_l, hr_r = stereo_pair(12, 40, 3)
    src = sample_of(hr_l, hr_r, s)
    seen = {"hflip": 0, "vflip": 0, "perm": set()}
    n = 400
    for seed in range(n):
        out = augment_stereo(src, np.random.default_rng(seed))
        # LR stays the box-downscale of HR, and the pair stays rectified (disparity 3).
        np.testing.assert_allclose(out.lr_left, block_mean(out.hr_left, s), atol=1e-12)
        np.testing.assert_array_equal(out.hr_right[:, :-3], out.hr_left[:, 3:])
        # Recover the transform from the left view and check the right view got the same one.
        found = None
        for h in (False, True):
            for v in (False, True):
                base_l, base_r = (hr_r[:, ::-1], hr_l[:, ::-1]) if h else (hr_l, hr_r)
                if v:
                    base_l, base_r = base_l[::-1], base_r[::-1]
                for perm in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]):
                    if np.array_equal(out.hr_left, base_l[:, :, perm]):
                        found = (h, v, tuple(perm))
                        np.testing.assert_array_equal(out.hr_right, base_r[:, :, perm])
        assert found is not None
        seen["hflip"] += found[0]
        seen["vflip"] += found[1]
        seen["perm"].add(found[2])
    # Fair coins (binomial sd = 10 at n=400) and every permutation used.
    assert abs(seen["hflip"] - n / 2) < 50 and abs(seen["vflip"] - n / 2) < 50
    assert len(seen["perm"]) == 6


def test_disabled_augmentations_are_identity() -> None:
    src = sample_of(*stereo_pair(8, 24), 2)
    out = augment_stereo(src, np.random.default_rng(1), hflip=False, vflip=False,
                         rgb_perm=False)
    for a, b in zip(out, src):
        np.testing.assert_array_equal(a, b)


def test_epoch_permutation_visits_every_pair_once_per_epoch() -> None:
    order = EpochPermutation(7, seed=3)
    for epoch in range(3):
        got = [order.pair_of(epoch * 7 + i) for i in range(7)]
        assert sorted(got) == list(range(7))
    e0 = [order.pair_of(i) for i in range(7)]
    e1 = [order.pair_of(7 + i) for i in range(7)]
    assert e0 != e1  # reshuffled
    assert e0 == [EpochPermutation(7, seed=3).pair_of(i) for i in range(7)]  # reproducible


def test_step_sampler_shards_the_global_batch() -> None:
    world, per_rank, accum, iters = 3, 2, 2, 5
    full = list(StepBatchSampler(per_rank * world * accum, total_iters=iters))
    per_rank_lists = [list(StepBatchSampler(per_rank, world_size=world, rank=r,
                                            accumulate=accum, total_iters=iters))
                      for r in range(world)]
    for t in range(iters):
        ranks = [[g for chunk in per_rank_lists[r][t * accum:(t + 1) * accum] for g in chunk]
                 for r in range(world)]
        union = sorted(g for chunk in ranks for g in chunk)
        assert union == full[t]  # disjoint and together the single-process batch
        assert len(set(union)) == len(union)
    # Resuming at iteration 3 yields the same suffix.
    resumed = list(StepBatchSampler(2, world_size=3, rank=1, accumulate=2, start_iter=3,
                                    total_iters=iters))
    assert resumed == per_rank_lists[1][3 * accum:]
    assert len(resumed) == 4


def test_patch_dataset_is_a_pure_function_of_seed_and_index() -> None:
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(3):
        hr_l = (rng.random((32, 96, 3)) * 255).astype(np.uint8)
        hr_r = (rng.random((32, 96, 3)) * 255).astype(np.uint8)
        pairs.append(CachedPair(f"p{i}", hr_l[::2, ::2], hr_r[::2, ::2], hr_l, hr_r, 255.0))
    cache = PairCache(pairs)
    a = StereoPatchDataset(cache, (8, 24), 2, seed=5)
    b = StereoPatchDataset(cache, (8, 24), 2, seed=5)
    c = StereoPatchDataset(cache, (8, 24), 2, seed=6)
    for g in (0, 1, 17, 10**6):
        x, y = a[g], b[g]
        for k in x:
            assert x[k].dtype == np.float32 or str(x[k].dtype) == "torch.float32"
            assert np.array_equal(x[k].numpy(), y[k].numpy())
        assert float(x["hr_left"].max()) <= 1.0 and float(x["hr_left"].min()) >= 0.0
    assert not np.array_equal(a[0]["hr_left"].numpy(), c[0]["hr_left"].numpy())
    assert not np.array_equal(a[0]["hr_left"].numpy(), a[1]["hr_left"].numpy())
    # The uint8 cache divides by 255 exactly like reading the image as float.
    item = a[4]
    pair = cache[a.order.pair_of(4)]
    vals = set(np.round(item["hr_left"].numpy().ravel() * 255.0, 3))
    assert vals <= set(np.arange(256, dtype=np.float64))
    assert pair.hr_left.dtype == np.uint8
    # sample_rng is what gives a sample its randomness.
    assert sample_rng(5, 4).integers(1 << 30) == sample_rng(5, 4).integers(1 << 30)


def test_patch_dataset_patch_tries() -> None:
    img = np.zeros((32, 192, 3), np.uint8)
    img[:, 96:] = (np.random.default_rng(1).random((32, 96, 3)) * 255).astype(np.uint8)
    cache = PairCache([CachedPair("half", img[::2, ::2], img[::2, ::2], img, img, 255.0)])
    plain = StereoPatchDataset(cache, (8, 24), 2, seed=3)
    picky = StereoPatchDataset(cache, (8, 24), 2, seed=3, patch_tries=6)
    flat = [float(plain[g]["hr_left"].max() == 0) for g in range(100)]
    flat_picky = [float(picky[g]["hr_left"].max() == 0) for g in range(100)]
    assert np.mean(flat) > 0.25 and np.mean(flat_picky) < 0.05


def test_view_gain_scales_the_right_view_only() -> None:
    rng = np.random.default_rng(0)
    views = [rng.random((6, 9, 3)).astype(np.float32) * 0.8 for _ in range(2)]
    hr = [np.kron(v, np.ones((2, 2, 1), np.float32)) for v in views]
    sample = StereoSample(views[0], views[1], hr[0], hr[1])
    assert view_gain(sample, np.random.default_rng(4), 0.0) is sample
    out = view_gain(sample, np.random.default_rng(4), 0.06)
    # The gains, drawn again in the documented order: exposure, then three channel balances.
    draw = np.random.default_rng(4)
    e = draw.uniform(-0.06, 0.06)
    b = draw.uniform(-0.02, 0.02, size=3)
    gains = (1 + e) * (1 + b)
    assert np.all(np.abs(gains - 1) <= 0.06 * 1.02 + 0.02)
    np.testing.assert_allclose(out.lr_right, np.clip(views[1] * gains, 0, 1), rtol=1e-6)
    np.testing.assert_allclose(out.hr_right, np.clip(hr[1] * gains, 0, 1), rtol=1e-6)
    assert out.lr_left is sample.lr_left and out.hr_left is sample.hr_left
    # LR is still the box downscale of HR: each view's target matches its input.
    np.testing.assert_allclose(block_mean(out.hr_right, 2), out.lr_right, atol=1e-6)
    bright = StereoSample(*(np.ones_like(a) for a in sample))
    assert view_gain(bright, np.random.default_rng(1), 0.5).hr_right.max() <= 1.0
    with pytest.raises(InputError, match="view gain"):
        view_gain(sample, np.random.default_rng(0), 1.0)


def test_patch_dataset_view_gain() -> None:
    img = (np.random.default_rng(2).random((32, 96, 3)) * 200).astype(np.uint8)
    cache = PairCache([CachedPair("p", img[::2, ::2], img[::2, ::2], img, img, 255.0)])
    plain = StereoPatchDataset(cache, (8, 24), 2, seed=3)
    jittered = StereoPatchDataset(cache, (8, 24), 2, seed=3, view_gain=0.1)
    ratios = []
    for g in range(20):
        a, b = plain[g], jittered[g]
        # Same crop and flips; left views untouched, right views scaled per channel.
        for key in ("lr_left", "hr_left"):
            assert np.array_equal(a[key].numpy(), b[key].numpy())
        r = b["hr_right"].sum(dim=(1, 2)) / a["hr_right"].sum(dim=(1, 2))
        r_lr = b["lr_right"].sum(dim=(1, 2)) / a["lr_right"].sum(dim=(1, 2))
        np.testing.assert_allclose(r.numpy(), r_lr.numpy(), rtol=1e-4)
        ratios.append(r.numpy())
    ratios = np.array(ratios)
    assert np.all(np.abs(ratios - 1) < 0.14) and ratios.std() > 0.02


def test_patch_larger_than_cached_images() -> None:
    img = np.zeros((16, 40, 3), np.uint8)
    cache = PairCache([CachedPair("small", img[::4, ::4], img[::4, ::4], img, img, 255.0)])
    with pytest.raises(InputError, match="larger than the LR image 4x10 of pair 'small'"):
        StereoPatchDataset(cache, (30, 90), 4, seed=0)


def mirrored_shift(img: np.ndarray, k: int) -> np.ndarray:
    """Rows moved down by k (up when negative), uncovered rows mirrored, written out by hand."""
    if k > 0:
        return np.concatenate([img[k - 1::-1], img[:-k]])
    if k < 0:
        return np.concatenate([img[-k:], img[:k - 1:-1]])
    return img


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("k", [-5, -1, 1, 3])
def test_shift_right_view_of_a_window_matches_the_whole_image(scale: int, k: int) -> None:
    rng = np.random.default_rng(scale + 10 * abs(k))
    hr_l, hr_r = ((rng.random((24 * scale, 40 * scale, 3)) * 255).astype(np.uint8)
                  for _ in range(2))
    whole = StereoSample(imresize(hr_l, 1 / scale), imresize(hr_r, 1 / scale), hr_l, hr_r)
    moved = mirrored_shift(hr_r, k)
    np.testing.assert_array_equal(shift_right_view(whole, k, scale).hr_right, moved)
    reference_lr = imresize(moved, 1 / scale)  # MATLAB bicubic of the whole shifted view
    # A window with the margin around a patch, shifted on its own, then cut back.
    m = shift_margin(abs(k), scale)
    top, left, ph, pw = 6, 5, 8, 12
    y0, x0 = top - m, left - m
    window = StereoSample(*(a[y0:y0 + ph + 2 * m, x0:x0 + pw + 2 * m] for a in whole[:2]),
                          *(a[y0 * scale:(y0 + ph + 2 * m) * scale,
                              x0 * scale:(x0 + pw + 2 * m) * scale] for a in whole[2:]))
    out = shift_right_view(window, k, scale)
    assert out.lr_left is window.lr_left and out.hr_left is window.hr_left
    assert out.lr_right.dtype == np.uint8
    np.testing.assert_array_equal(out.lr_right[m:m + ph, m:m + pw],
                                  reference_lr[top:top + ph, left:left + pw])
    s = scale
    np.testing.assert_array_equal(out.hr_right[m * s:(m + ph) * s, m * s:(m + pw) * s],
                                  moved[top * s:(top + ph) * s, left * s:(left + pw) * s])
    # Without the margin, the edge rows of the patch come out wrong.
    bare = shift_right_view(StereoSample(*(a[m:-m, m:-m] for a in window[:2]),
                                         *(a[m * s:-m * s, m * s:-m * s] for a in window[2:])),
                            k, s)
    assert not np.array_equal(bare.lr_right, reference_lr[top:top + ph, left:left + pw])
    # shifted_crop gives the same patch, also where the window touches the image's edges.
    H, W = 24, 40
    for t, lft in ((top, left), (0, 0), (H - ph, W - pw), (1, W - pw - 1)):
        got = shifted_crop(whole, t, lft, (ph, pw), scale, k)
        np.testing.assert_array_equal(got.lr_right, reference_lr[t:t + ph, lft:lft + pw])
        np.testing.assert_array_equal(got.hr_right, moved[t * s:(t + ph) * s,
                                                          lft * s:(lft + pw) * s])
        np.testing.assert_array_equal(got.lr_left, whole.lr_left[t:t + ph, lft:lft + pw])
    assert shift_right_view(whole, 0, scale) is whole
    with pytest.raises(InputError, match="vertical shift"):
        shift_right_view(whole, 24 * scale, scale)


@pytest.mark.parametrize("width", [60, 13])
def test_patch_dataset_view_shift(width: int) -> None:
    """Same windows as without the shift; right views moved by -2..2 rows, LR remade exactly
    (also when the image is barely wider than the patch, so no margin fits beside it)."""
    s = 4
    rng = np.random.default_rng(5)
    hr_l, hr_r = ((rng.random((40 * s, width * s, 3)) * 255).astype(np.uint8) for _ in range(2))
    cache = PairCache([CachedPair("p", imresize(hr_l, 1 / s), imresize(hr_r, 1 / s), hr_l, hr_r,
                                  255.0)])
    flags = {"hflip": False, "vflip": False, "rgb_perm": False}
    plain = StereoPatchDataset(cache, (8, 12), s, seed=1, **flags)
    ds = StereoPatchDataset(cache, (8, 12), s, seed=1, view_shift=2, **flags)
    seen = set()
    for g in range(40):
        item = {k: np.round(v.numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
                for k, v in ds[g].items()}
        ref = plain[g]
        assert np.array_equal(ds[g]["hr_left"], ref["hr_left"])
        assert np.array_equal(ds[g]["lr_left"], ref["lr_left"])
        # Locate the window in the source, then find the right view's shift.
        hits = [(y, x) for y in range(0, 40 * s - 31, s) for x in range(0, width * s - 47, s)
                if np.array_equal(hr_l[y:y + 32, x:x + 48], item["hr_left"])]
        assert len(hits) == 1
        y, x = hits[0]
        shifts = [k for k in range(-2, 3) if np.array_equal(
            mirrored_shift(hr_r, k)[y:y + 32, x:x + 48], item["hr_right"])]
        assert len(shifts) == 1
        k = shifts[0]
        seen.add(k)
        lr_ref = imresize(mirrored_shift(hr_r, k), 1 / s)
        ly, lx = y // s, x // s
        np.testing.assert_array_equal(item["lr_right"], lr_ref[ly:ly + 8, lx:lx + 12])
    assert seen == {-2, -1, 0, 1, 2}
    box = PairCache([CachedPair("box", hr_l[::s, ::s], hr_r[::s, ::s], hr_l, hr_r, 255.0)])
    with pytest.raises(InputError, match="not the bicubic downscale"):
        StereoPatchDataset(box, (8, 12), s, seed=1, view_shift=1)
    with pytest.raises(InputError, match="view_shift"):
        StereoPatchDataset(cache, (8, 12), s, seed=1, view_shift=-1)


def test_patch_dataset_view_shift_prob(monkeypatch: pytest.MonkeyPatch) -> None:
    """With view_shift_prob p, about a fraction p of the samples is moved, never by 0 rows,
    by every row count 1..view_shift up and down, with the windows of an unshifted run."""
    import stereosr.train.data as train_data

    s = 2
    rng = np.random.default_rng(9)
    hr_l, hr_r = ((rng.random((20 * s, 30 * s, 3)) * 255).astype(np.uint8) for _ in range(2))
    cache = PairCache([CachedPair("p", imresize(hr_l, 1 / s), imresize(hr_r, 1 / s), hr_l, hr_r,
                                  255.0)])
    calls: list[tuple[int, int, int]] = []
    real = train_data.shifted_crop

    def spy(sample, top, left, patch_hw, scale, shift):  # type: ignore[no-untyped-def]
        calls.append((top, left, shift))
        return real(sample, top, left, patch_hw, scale, shift)

    monkeypatch.setattr(train_data, "shifted_crop", spy)
    n = 400
    for prob in (0.25, 1.0):
        calls.clear()
        ds = StereoPatchDataset(cache, (6, 8), s, seed=3, view_shift=2, view_shift_prob=prob)
        for g in range(n):
            ds[g]
        shifted = [k for _, _, k in calls if k]
        assert set(shifted) == {-2, -1, 1, 2}
        assert abs(len(shifted) / n - prob) < 0.06
        windows = [(t, lft) for t, lft, _ in calls]
        calls.clear()
        plain = StereoPatchDataset(cache, (6, 8), s, seed=3)
        for g in range(n):
            plain[g]
        assert windows == [(t, lft) for t, lft, _ in calls]
    for bad in ({"view_shift": 0, "view_shift_prob": 0.5}, {"view_shift": 1, "view_shift_prob": 0},
                {"view_shift": 1, "view_shift_prob": 1.5}):
        with pytest.raises(InputError, match="view_shift_prob"):
            StereoPatchDataset(cache, (6, 8), s, seed=3, **bad)
