"""Realistic degradations: config, sampling, each operation against a reference, pair draws."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage, stats
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from stereosr.degrade import DegradationConfig, bicubic_pair, degrade_pair, imresize
from stereosr.degrade.realistic import (
    BlurConfig,
    DegradationParams,
    GaussianNoiseConfig,
    JPEGConfig,
    PoissonNoiseConfig,
    add_gaussian_noise,
    add_poisson_noise,
    apply_blur,
    degrade_image,
    gaussian_kernel,
    jpeg_compress,
    sample_params,
)
from stereosr.errors import InputError
from stereosr.imageops import modcrop


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    left, right, _ = data.stereo_motorcycle()
    return left[100:229, 200:398], right[100:229, 200:398]  # 129 x 198: not multiples of 4


def _only(**sections: object) -> DegradationConfig:
    """A config with every random stage off except the given sections."""
    off = {"blur": BlurConfig(prob=0.0), "gaussian_noise": GaussianNoiseConfig(prob=0.0),
           "poisson_noise": PoissonNoiseConfig(prob=0.0), "jpeg": JPEGConfig(prob=0.0)}
    off.update(sections)  # type: ignore[arg-type]
    return DegradationConfig(**off)  # type: ignore[arg-type]


ALL_ON = DegradationConfig(
    blur=BlurConfig(prob=1.0), gaussian_noise=GaussianNoiseConfig(prob=1.0),
    poisson_noise=PoissonNoiseConfig(prob=1.0), jpeg=JPEGConfig(prob=1.0))


# --------------------------------------------------------------------------------- config

def test_from_dict_and_yaml_round_trip(tmp_path: Path) -> None:
    cfg = DegradationConfig.from_dict({
        "blur": {"prob": 0.8, "kernel_size": [9, 15], "sigma": [0.5, 2.0], "rotation": 45},
        "downsample": {"methods": ["bicubic", "area"]},
        "gaussian_noise": {"sigma": [2, 10]},
        "jpeg": None,
        "per_view": True,
    })
    assert cfg.blur.kernel_size == (9, 15) and cfg.blur.rotation == (45.0, 45.0)
    assert cfg.downsample.methods == ("bicubic", "area")
    assert cfg.jpeg.prob == 0.0 and cfg.per_view and not cfg.independent_noise
    assert cfg.poisson_noise == PoissonNoiseConfig()
    assert DegradationConfig.from_dict(cfg.to_dict()) == cfg
    import yaml

    path = tmp_path / "deg.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert DegradationConfig.from_yaml(path) == cfg
    assert DegradationConfig.from_dict(None) == DegradationConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.per_view = False  # type: ignore[misc]


@pytest.mark.parametrize("bad, key", [
    ({"blurr": {}}, "'blurr'"),
    ({"blur": {"sigmaa": [1, 2]}}, "'blur.sigmaa'"),
    ({"jpeg": {"qualty": 50}}, "'jpeg.qualty'"),
    ({"gaussian_noise": {"prob": 0.5, "grey": True}}, "'gaussian_noise.grey'"),
])
def test_unknown_keys_are_named(bad: dict, key: str) -> None:
    with pytest.raises(InputError, match=key):
        DegradationConfig.from_dict(bad)


@pytest.mark.parametrize("bad", [
    {"blur": {"prob": 1.5}},
    {"blur": {"kernel_size": [8, 12]}},
    {"blur": {"sigma": [3, 1]}},
    {"downsample": {"methods": ["lanczos"]}},
    {"downsample": {"methods": []}},
    {"jpeg": {"quality": [0, 50]}},
    {"gaussian_noise": {"sigma": "loud"}},
    {"per_view": "yes please"},
    {"blur": [1, 2]},
    ["blur"],
])
def test_bad_values_raise_one_line(bad: object) -> None:
    with pytest.raises(InputError) as info:
        DegradationConfig.from_dict(bad)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        DegradationConfig.from_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("blur: {prob: [\n")
    with pytest.raises(InputError, match="invalid YAML"):
        DegradationConfig.from_yaml(bad)


# ---------------------------------------------------------------------------------- blur

def test_isotropic_kernel_is_the_analytic_gaussian() -> None:
    for size, sigma in ((7, 0.8), (15, 2.0), (21, 3.0)):
        k = gaussian_kernel(size, sigma)
        x = np.arange(size) - size // 2
        g = np.exp(-x ** 2 / (2 * sigma ** 2))
        ref = np.outer(g, g) / np.outer(g, g).sum()
        assert k.shape == (size, size)
        assert abs(k.sum() - 1) < 1e-12
        np.testing.assert_allclose(k, ref, rtol=1e-10, atol=1e-15)


def test_anisotropic_kernel_is_the_rotated_normal_density() -> None:
    size, sx, sy, deg = 15, 3.0, 1.0, 30.0
    k = gaussian_kernel(size, sx, sy, deg)
    t = np.radians(deg)
    major = np.array([np.cos(t), np.sin(t)])  # x right, y up
    minor = np.array([-np.sin(t), np.cos(t)])
    cov = sx ** 2 * np.outer(major, major) + sy ** 2 * np.outer(minor, minor)
    half = size // 2
    rows, cols = np.mgrid[0:size, 0:size]
    pts = np.stack([cols - half, half - rows], axis=-1).reshape(-1, 2)
    ref = stats.multivariate_normal(mean=[0, 0], cov=cov).pdf(pts).reshape(size, size)
    assert abs(k.sum() - 1) < 1e-12
    np.testing.assert_allclose(k, ref / ref.sum(), rtol=1e-9, atol=1e-15)
    # 30 degrees counter-clockwise: the long axis climbs to the right (up = smaller row)
    assert k[half - 1, half + 2] > k[half + 1, half + 2]
    np.testing.assert_allclose(gaussian_kernel(9, 2.0, 0.7, 90.0), gaussian_kernel(9, 0.7, 2.0),
                               atol=1e-15)


def test_blur_matches_scipy_convolve_with_mirror_borders() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((23, 31, 3))
    for k in (gaussian_kernel(9, 1.5, 0.6, 20.0), gaussian_kernel(21, 3.0),
              rng.random((5, 7)), gaussian_kernel(61, 9.0)):  # the last is wider than img
        ref = np.stack([ndimage.convolve(img[..., c], k, mode="mirror") for c in range(3)], -1)
        np.testing.assert_allclose(apply_blur(img, k), ref, atol=1e-12)


# --------------------------------------------------------------------------------- noise

def test_gaussian_noise_statistics() -> None:
    img = np.full((256, 256, 3), 0.5)
    colour = add_gaussian_noise(img, 10.0, grey=False, rng=np.random.default_rng(1)) - img
    assert abs(colour.std() * 255 - 10.0) < 0.15
    assert abs(colour.mean() * 255) < 0.1
    corr = np.corrcoef(colour[..., 0].ravel(), colour[..., 1].ravel())[0, 1]
    assert abs(corr) < 0.02
    grey = add_gaussian_noise(img, 10.0, grey=True, rng=np.random.default_rng(1)) - img
    assert abs(grey.std() * 255 - 10.0) < 0.2
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])


def test_poisson_noise_statistics() -> None:
    for level, scale in ((0.2, 1.0), (0.6, 2.5)):
        img = np.full((256, 256, 3), level)
        noise = add_poisson_noise(img, scale, grey=False, rng=np.random.default_rng(2)) - img
        expected = scale * np.sqrt(level / 255.0)
        assert abs(noise.std() / expected - 1) < 0.02
        assert abs(noise.mean()) < 0.02 * expected
    dark = add_poisson_noise(np.zeros((64, 64, 3)), 3.0, False, np.random.default_rng(3))
    np.testing.assert_array_equal(dark, 0.0)  # no photons, no shot noise
    img = np.full((64, 64, 3), 0.4)
    grey = add_poisson_noise(img, 1.0, grey=True, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])


def test_noise_through_the_pipeline_has_the_drawn_sigma() -> None:
    flat = np.full((512, 512, 3), 0.5)
    cfg = _only(gaussian_noise=GaussianNoiseConfig(prob=1.0, sigma=(8.0, 8.0), grey_prob=0.0))
    lr_l, _ = degrade_pair(flat, flat, 2, cfg, rng=5)
    assert lr_l.shape == (256, 256, 3) and lr_l.dtype == np.float64
    assert abs((lr_l - 0.5).std() * 255 - 8.0) < 0.1


# ---------------------------------------------------------------------------------- JPEG

def test_jpeg_quality_is_measurable(pair: tuple[np.ndarray, np.ndarray]) -> None:
    img = pair[0].astype(np.float64) / 255
    scores = [peak_signal_noise_ratio(img, jpeg_compress(img, q), data_range=1.0)
              for q in (10, 40, 95)]
    assert scores[0] < scores[1] - 2 < scores[2] - 4
    assert scores[2] > 35
    grey = jpeg_compress(img[..., :1], 50)
    assert grey.shape == img[..., :1].shape


# ----------------------------------------------------------------------- sampling, pairs

def test_sampled_parameters_stay_in_their_ranges() -> None:
    cfg = DegradationConfig.from_dict({
        "blur": {"prob": 0.5, "kernel_size": [7, 13], "sigma": [0.5, 2.0]},
        "jpeg": {"prob": 1.0, "quality": [60, 70]},
        "gaussian_noise": {"prob": 0.3, "sigma": [2, 4]},
        "downsample": {"methods": ["bicubic", "bilinear"]},
    })
    rng = np.random.default_rng(7)
    draws = [sample_params(cfg, rng) for _ in range(400)]
    blurred = [d.blur for d in draws if d.blur is not None]
    assert 0.42 < len(blurred) / 400 < 0.58
    assert {b[0] for b in blurred} == {7, 9, 11, 13}
    assert all(0.5 <= b[1] <= 2.0 and 0.5 <= b[2] <= 2.0 for b in blurred)
    assert all(60 <= d.jpeg_quality <= 70 for d in draws)  # type: ignore[operator]
    sig = [d.gaussian_sigma for d in draws if d.gaussian_sigma is not None]
    assert 0.22 < len(sig) / 400 < 0.38 and all(2 <= s <= 4 for s in sig)
    assert {d.method for d in draws} == {"bicubic", "bilinear"}


def test_reproducible_with_a_seed(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a = degrade_pair(*pair, 4, ALL_ON, rng=np.random.default_rng(11))
    b = degrade_pair(*pair, 4, ALL_ON, rng=np.random.default_rng(11))
    c = degrade_pair(*pair, 4, ALL_ON, rng=12)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (32, 49, 3) and a[0].dtype == np.uint8


def test_shared_draw_gives_identical_views_identical_lr(pair: tuple[np.ndarray, np.ndarray]
                                                        ) -> None:
    view = pair[0]
    for seed in range(3):
        lr_l, lr_r = degrade_pair(view, view, 4, ALL_ON, rng=seed)
        np.testing.assert_array_equal(lr_l, lr_r)
    # and the degradation did something beyond bicubic
    assert np.abs(lr_l.astype(int) - imresize(modcrop(view, 4), 0.25).astype(int)).mean() > 1


def test_independent_options_differ(pair: tuple[np.ndarray, np.ndarray]) -> None:
    view = pair[0]
    per_view = dataclasses.replace(ALL_ON, per_view=True)
    lr_l, lr_r = degrade_pair(view, view, 4, per_view, rng=0)
    assert np.abs(lr_l.astype(int) - lr_r.astype(int)).mean() > 1
    own_noise = dataclasses.replace(ALL_ON, independent_noise=True)
    lr_l, lr_r = degrade_pair(view, view, 4, own_noise, rng=0)
    assert not np.array_equal(lr_l, lr_r)
    # without noise stages the shared settings give identical views identical LR again
    quiet = dataclasses.replace(own_noise, gaussian_noise=GaussianNoiseConfig(prob=0.0),
                                poisson_noise=PoissonNoiseConfig(prob=0.0))
    lr_l, lr_r = degrade_pair(view, view, 4, quiet, rng=0)
    np.testing.assert_array_equal(lr_l, lr_r)


def test_bicubic_fast_path_is_matlab_imresize(pair: tuple[np.ndarray, np.ndarray]) -> None:
    lr_l, lr_r = degrade_pair(*pair, 4)
    np.testing.assert_array_equal(lr_l, imresize(pair[0][:128, :196], 0.25))
    np.testing.assert_array_equal(lr_r, imresize(pair[1][:128, :196], 0.25))
    assert all(np.array_equal(a, b) for a, b in zip(bicubic_pair(*pair, 4), (lr_l, lr_r)))
    # a realistic config that draws nothing but the resize takes the same integer path
    plain = _only()
    lr2 = degrade_pair(*pair, 4, plain, rng=0)
    np.testing.assert_array_equal(lr2[0], lr_l)


def test_blur_then_downsample_equals_the_two_steps(pair: tuple[np.ndarray, np.ndarray]) -> None:
    params = DegradationParams(blur=(13, 1.7, 0.9, 60.0), method="area", gaussian_sigma=None,
                               gaussian_grey=False, poisson_scale=None, poisson_grey=False,
                               jpeg_quality=None, noise_seed=0)
    hr = pair[0][:128, :196].astype(np.float64) / 255
    kernel = params.kernel
    assert kernel is not None
    blurred = np.stack([ndimage.convolve(hr[..., c], kernel, mode="mirror")
                        for c in range(3)], -1)
    blocks = blurred.reshape(32, 4, 49, 4, 3).mean(axis=(1, 3))
    out = degrade_image(hr, 4, params)
    np.testing.assert_allclose(out, np.clip(blocks, 0, 1), atol=1e-12)


def test_dtypes_and_channels(pair: tuple[np.ndarray, np.ndarray]) -> None:
    grey = pair[0][..., 0]
    lr_l, _ = degrade_pair(grey, grey, 2, ALL_ON, rng=1)
    assert lr_l.shape == (64, 99) and lr_l.dtype == np.uint8
    f32 = pair[0].astype(np.float32) / 255
    lr_l, _ = degrade_pair(f32, f32, 4, ALL_ON, rng=1)
    assert lr_l.dtype == np.float32 and 0 <= lr_l.min() and lr_l.max() <= 1
    u16 = pair[0].astype(np.uint16) * 257
    lr_l, _ = degrade_pair(u16, u16, 4, ALL_ON, rng=1)
    assert lr_l.dtype == np.uint16
    alpha = np.full(pair[0].shape[:2] + (1,), 200, dtype=np.uint8)
    rgba = np.concatenate([pair[0], alpha], axis=2)
    lr_l, _ = degrade_pair(rgba, rgba, 4, ALL_ON, rng=1)
    assert lr_l.shape == (32, 49, 4)
    np.testing.assert_array_equal(lr_l[..., 3], 200)  # alpha only resized: no noise, no JPEG


def test_bad_inputs(pair: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(InputError, match="scale"):
        degrade_pair(*pair, 0)
    with pytest.raises(InputError, match="scale"):
        degrade_pair(*pair, 2.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="smaller than the scale"):
        degrade_pair(pair[0][:3], pair[1][:3], 4)
    with pytest.raises(InputError):
        degrade_pair(pair[0].astype(np.int32), pair[1], 4, ALL_ON, rng=0)
    with pytest.raises(InputError, match="DegradationConfig"):
        degrade_pair(*pair, 4, {"blur": {}}, rng=0)  # type: ignore[arg-type]
