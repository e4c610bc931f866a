"""PSNR and SSIM against scikit-image, across dtypes, sizes and options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from stereosr.errors import InputError
from stereosr.metrics import psnr, ssim

TOL = 1e-6


def _pair(h: int, w: int, c: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth-ish uint8 image and a noisy copy of it (so SSIM is far from 0 and 1)."""
    rng = np.random.default_rng(seed)
    shape = (h, w) if c is None else (h, w, c)
    base = rng.integers(0, 256, size=shape).astype(np.float64)
    for axis in (0, 1):  # cheap smoothing so local statistics vary like in photos
        base = (base + np.roll(base, 1, axis=axis) + np.roll(base, -1, axis=axis)) / 3.0
    hr = np.clip(np.round(base), 0, 255).astype(np.uint8)
    sr = np.clip(np.round(base + rng.normal(0, 12, size=shape)), 0, 255).astype(np.uint8)
    return sr, hr


def _sk_ssim(a: np.ndarray, b: np.ndarray, gaussian: bool = False) -> float:
    kw: dict[str, object] = {"data_range": 255}
    if a.ndim == 3:
        kw["channel_axis"] = 2
    if gaussian:
        kw.update(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    else:
        kw["win_size"] = 7
    return float(structural_similarity(a.astype(np.float64), b.astype(np.float64), **kw))


def _y(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float64) / 255.0
    return 16.0 + x[..., 0] * 65.481 + x[..., 1] * 128.553 + x[..., 2] * 24.966


@pytest.mark.parametrize("h,w,c", [(37, 53, 3), (64, 48, 3), (7, 9, 3), (41, 30, None),
                                   (29, 31, 1)])
def test_uint8_matches_skimage(h: int, w: int, c: int | None) -> None:
    sr, hr = _pair(h, w, c, seed=h * w)
    assert psnr(sr, hr) == pytest.approx(peak_signal_noise_ratio(hr, sr, data_range=255),
                                         abs=TOL)
    a = sr[..., 0] if c == 1 else sr
    b = hr[..., 0] if c == 1 else hr
    assert ssim(sr, hr) == pytest.approx(_sk_ssim(a, b), abs=TOL)
    if min(h, w) >= 11:
        assert ssim(sr, hr, window="gaussian") == pytest.approx(_sk_ssim(a, b, True), abs=TOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_inputs_are_quantised_to_uint8(dtype: type) -> None:
    rng = np.random.default_rng(3)
    hr_f = rng.random((33, 45, 3))
    sr_f = hr_f + rng.normal(0, 0.05, size=hr_f.shape)  # some values outside [0, 1]
    q = lambda x: np.clip(np.round(x.astype(dtype).astype(np.float64) * 255), 0, 255)
    sr_u, hr_u = q(sr_f).astype(np.uint8), q(hr_f).astype(np.uint8)
    sr_in, hr_in = sr_f.astype(dtype), hr_f.astype(dtype)
    assert psnr(sr_in, hr_in) == pytest.approx(
        peak_signal_noise_ratio(hr_u, sr_u, data_range=255), abs=TOL)
    assert ssim(sr_in, hr_in) == pytest.approx(_sk_ssim(sr_u, hr_u), abs=TOL)
    # without quantisation: the float values times 255, unrounded and unclipped
    sr_s, hr_s = sr_in.astype(np.float64) * 255, hr_in.astype(np.float64) * 255
    mse = np.mean((sr_s - hr_s) ** 2)
    assert psnr(sr_in, hr_in, quantize=False) == pytest.approx(
        10 * np.log10(255.0 ** 2 / mse), abs=TOL)
    assert ssim(sr_in, hr_in, quantize=False) == pytest.approx(_sk_ssim(sr_s, hr_s), abs=TOL)


def test_torch_chw_and_uint16_inputs() -> None:
    sr, hr = _pair(40, 50, 3, seed=11)
    t_sr = torch.from_numpy(sr).permute(2, 0, 1).float() / 255.0
    t_hr = torch.from_numpy(hr).permute(2, 0, 1).float() / 255.0
    assert psnr(t_sr, t_hr) == pytest.approx(psnr(sr, hr), abs=TOL)
    assert ssim(t_sr, t_hr) == pytest.approx(ssim(sr, hr), abs=TOL)
    assert ssim(torch.from_numpy(sr).permute(2, 0, 1), hr) == pytest.approx(ssim(sr, hr), abs=TOL)
    # 16-bit: reduced to 8 bits with round(x / 257)
    sr16 = sr.astype(np.uint16) * 257 + 100
    hr16 = hr.astype(np.uint16) * 257
    assert psnr(sr16, hr16) == pytest.approx(psnr(sr, hr), abs=TOL)


def test_crop_border_and_y_channel() -> None:
    sr, hr = _pair(50, 61, 3, seed=5)
    b = 4
    sc, hc = sr[b:-b, b:-b], hr[b:-b, b:-b]
    assert psnr(sr, hr, crop_border=b) == pytest.approx(
        peak_signal_noise_ratio(hc, sc, data_range=255), abs=TOL)
    assert ssim(sr, hr, crop_border=b) == pytest.approx(_sk_ssim(sc, hc), abs=TOL)
    ys, yh = _y(sc), _y(hc)
    assert psnr(sr, hr, crop_border=b, test_y_channel=True) == pytest.approx(
        peak_signal_noise_ratio(yh, ys, data_range=255), abs=TOL)
    assert ssim(sr, hr, crop_border=b, test_y_channel=True, window="gaussian") == pytest.approx(
        _sk_ssim(ys, yh, gaussian=True), abs=TOL)
    # Y values of pure colours: black 16, white 235
    black, white = np.zeros((1, 1, 3), np.uint8), np.full((1, 1, 3), 255, np.uint8)
    assert 10 * np.log10(255 ** 2 / (235 - 16) ** 2) == pytest.approx(
        psnr(black, white, test_y_channel=True), abs=TOL)


def test_identical_images() -> None:
    _, hr = _pair(20, 20, 3, seed=1)
    assert psnr(hr, hr) == float("inf")
    assert ssim(hr, hr) == pytest.approx(1.0, abs=1e-12)
    assert ssim(hr, hr, window="gaussian") == pytest.approx(1.0, abs=1e-12)


def test_real_image_pair() -> None:
    from skimage.data import stereo_motorcycle

    left, right, _ = stereo_motorcycle()
    left, right = left[100:231, 200:377], right[100:231, 200:377]
    assert psnr(right, left) == pytest.approx(
        peak_signal_noise_ratio(left, right, data_range=255), abs=TOL)
    assert ssim(right, left) == pytest.approx(_sk_ssim(right, left), abs=TOL)
    assert ssim(right, left, window="gaussian") == pytest.approx(
        _sk_ssim(right, left, gaussian=True), abs=TOL)


def _one_line_error(fn: object, *args: object, **kw: object) -> str:
    with pytest.raises(InputError) as info:
        fn(*args, **kw)  # type: ignore[operator]
    msg = str(info.value)
    assert msg and "\n" not in msg
    return msg


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_bad_input(metric: object) -> None:
    sr, hr = _pair(20, 30, 3, seed=2)
    assert "size" in _one_line_error(metric, sr[:19], hr)
    assert "channels" in _one_line_error(metric, sr[..., :1], hr)
    nan = sr.astype(np.float32) / 255
    nan[3, 4, 1] = np.nan
    assert "NaN" in _one_line_error(metric, nan, hr)
    assert "shape" in _one_line_error(metric, sr[None], hr[None])
    assert "channels" in _one_line_error(metric, np.zeros((8, 8, 2), np.uint8),
                                         np.zeros((8, 8, 2), np.uint8))
    assert "dtype" in _one_line_error(metric, sr.astype(bool), hr.astype(bool))
    _one_line_error(metric, [[1, 2]], [[1, 2]])
    _one_line_error(metric, sr, hr, crop_border=15)


def test_ssim_too_small() -> None:
    a = np.zeros((6, 30, 3), np.uint8)
    assert "window" in _one_line_error(ssim, a, a)
    b = np.zeros((10, 30, 3), np.uint8)
    ssim(b, b)
    assert "window" in _one_line_error(ssim, b, b, window="gaussian")
