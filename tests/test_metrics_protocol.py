"""Stereo evaluation protocols: (L+R)/2, Left with 64 columns cropped, BasicSR options."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from stereosr.errors import InputError
from stereosr.metrics import (
    LEFT,
    STEREO,
    Protocol,
    basicsr_protocol,
    get_protocol,
    mean_scores,
    score_pair,
)

TOL = 1e-6


def _views(seed: int, h: int = 45, w: int = 97) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, size=(2, h, w, 3)).astype(np.float64)
    hr = (hr + np.roll(hr, 1, axis=2) + np.roll(hr, 1, axis=1)) / 3
    sr = hr + rng.normal(0, 10, size=hr.shape)
    q = lambda x: np.clip(np.round(x), 0, 255).astype(np.uint8)
    return [q(sr[0]), q(sr[1]), q(hr[0]), q(hr[1])]


def _sk(sr: np.ndarray, hr: np.ndarray, gaussian: bool = False) -> tuple[float, float]:
    p = peak_signal_noise_ratio(hr, sr, data_range=255)
    kw: dict[str, object] = {"data_range": 255}
    if sr.ndim == 3:
        kw["channel_axis"] = 2
    if gaussian:
        kw.update(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    else:
        kw["win_size"] = 7
    return p, structural_similarity(sr.astype(np.float64), hr.astype(np.float64), **kw)


def test_stereo_left_and_basicsr_protocols() -> None:
    srl, srr, hrl, hrr = _views(0)
    scores = score_pair(srl, srr, hrl, hrr, [STEREO, LEFT, get_protocol("basicsr", scale=4)])
    pl, sl = _sk(srl, hrl)
    pr, sr_ = _sk(srr, hrr)
    assert scores["stereo"]["psnr"] == pytest.approx((pl + pr) / 2, abs=TOL)
    assert scores["stereo"]["ssim"] == pytest.approx((sl + sr_) / 2, abs=TOL)
    p, s = _sk(srl[:, 64:], hrl[:, 64:])
    assert scores["left"] == pytest.approx({"psnr": p, "ssim": s}, abs=TOL)

    def y(img: np.ndarray) -> np.ndarray:
        x = img[4:-4, 4:-4].astype(np.float64) / 255
        return 16 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]

    pl, sl = _sk(y(srl), y(hrl), gaussian=True)
    pr, sr_ = _sk(y(srr), y(hrr), gaussian=True)
    b = scores["basicsr-y-crop4"]
    assert b["psnr"] == pytest.approx((pl + pr) / 2, abs=TOL)
    assert b["ssim"] == pytest.approx((sl + sr_) / 2, abs=TOL)


def test_left_protocol_ignores_right_view() -> None:
    srl, srr, hrl, hrr = _views(1)
    a = score_pair(srl, srr, hrl, hrr, [LEFT])
    b = score_pair(srl, None, hrl, None, [LEFT])  # type: ignore[arg-type]
    assert a == b


def test_custom_protocol_and_float_views() -> None:
    views = _views(2)
    proto = Protocol("rgb-crop2", crop_border=2, ssim_window="gaussian")
    scores = score_pair(*[v.astype(np.float32) / 255 for v in views], [proto])
    srl, srr, hrl, hrr = (v[2:-2, 2:-2] for v in views)
    pl, sl = _sk(srl, hrl, gaussian=True)
    pr, sr_ = _sk(srr, hrr, gaussian=True)
    assert scores["rgb-crop2"]["psnr"] == pytest.approx((pl + pr) / 2, abs=TOL)
    assert scores["rgb-crop2"]["ssim"] == pytest.approx((sl + sr_) / 2, abs=TOL)
    assert basicsr_protocol(2, y_channel=False).name == "basicsr-rgb-crop2"


def test_mean_scores() -> None:
    a = {"stereo": {"psnr": 20.0, "ssim": 0.5}}
    b = {"stereo": {"psnr": 30.0, "ssim": 0.7}}
    assert mean_scores([a, b])["stereo"] == pytest.approx({"psnr": 25.0, "ssim": 0.6})
    with pytest.raises(InputError):
        mean_scores([])


def test_protocol_errors() -> None:
    with pytest.raises(InputError, match="unknown protocol"):
        get_protocol("middlebury")
    with pytest.raises(InputError):
        Protocol("x", views="right")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        Protocol("x", crop_left=-1)
    srl, srr, hrl, hrr = _views(3)
    with pytest.raises(InputError, match="unique"):
        score_pair(srl, srr, hrl, hrr, [STEREO, STEREO])
    with pytest.raises(InputError, match="right views differ in size"):
        score_pair(srl, srr[:, :-1], hrl, hrr, [STEREO])
    with pytest.raises(InputError, match="too small"):
        score_pair(srl[:, :60], srr, hrl[:, :60], hrr, [LEFT])


def test_image_too_small_for_a_protocol_names_it() -> None:
    """The default protocols include 'left' (64 columns cropped): a 64-wide pair is refused
    naming that protocol and how to go on, and scores with 'stereo' alone."""
    rng = np.random.default_rng(3)
    views = [rng.integers(0, 256, (16, 64, 3), dtype=np.uint8) for _ in range(4)]
    with pytest.raises(InputError) as info:
        score_pair(*views, [STEREO, LEFT])
    msg = str(info.value)
    assert msg.startswith("protocol 'left': image of 64x16") and "leave this protocol out" in msg
    assert "\n" not in msg
    got = score_pair(*views, [STEREO])["stereo"]["psnr"]
    want = (peak_signal_noise_ratio(views[2], views[0], data_range=255)
            + peak_signal_noise_ratio(views[3], views[1], data_range=255)) / 2
    assert got == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("bad", ["alex", 0.5, object()])
def test_lpips_argument_must_be_a_module(bad: object) -> None:
    rng = np.random.default_rng(4)
    views = [rng.integers(0, 256, (16, 80, 3), dtype=np.uint8) for _ in range(4)]
    with pytest.raises(InputError, match="lpips must be an LPIPS module.*load_lpips") as info:
        score_pair(*views, [STEREO], metrics="psnr,lpips", lpips=bad)
    assert "\n" not in str(info.value)
