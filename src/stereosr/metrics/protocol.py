"""Evaluation protocols: which views, crops, channels and SSIM window a score uses.

- ``STEREO`` (the default of the stereo SR papers and NTIRE): both views, RGB, 8-bit, no crop,
  7 x 7 uniform-window SSIM; a pair scores ``(score(left) + score(right)) / 2``.
- ``LEFT`` (the older iPASSR tables): the left view only, its 64 leftmost columns dropped
  (the part of the left view the right camera does not see).
- ``basicsr_protocol(crop)``: both views, ``crop`` pixels dropped per side, luma Y, 11 x 11
  Gaussian SSIM, as BasicSR's ``crop_border`` / ``test_y_channel`` options compute it.

Metrics (:data:`METRIC_NAMES`, chosen with ``metrics=``): ``psnr`` (dB) and ``ssim`` per
protocol; ``lpips`` (needs an :class:`~stereosr.metrics.lpips.LPIPS` module) on the protocol's
views and crops, always in RGB (LPIPS is defined on colour images; ``y_channel`` does not
apply), reported per view (``lpips_left``, ``lpips_right``) and as ``lpips``, the protocol's
combination ((L+R)/2 for both views, as NTIRE's perceptual track); ``consistency`` (needs the
HR left-view disparity) for protocols with both views: ``consistency`` = warp error of the SR
pair minus that of the HR pair, ``warp_error_sr``, ``warp_error_hr`` (grey levels, see
:func:`~stereosr.metrics.consistency.stereo_consistency`; uncropped views).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import InputError
from ._image import Image, check_same_shape, crop_image, rgb_to_y, to_scoring_array
from .consistency import stereo_consistency
from .lpips import LPIPS, lpips_from_arrays
from .psnr import psnr_from_arrays
from .ssim import Window, ssim_from_arrays

__all__ = [
    "LEFT",
    "METRIC_NAMES",
    "PROTOCOL_NAMES",
    "STEREO",
    "Protocol",
    "basicsr_protocol",
    "get_protocol",
    "mean_scores",
    "parse_metrics",
    "score_pair",
]


@dataclass(frozen=True)
class Protocol:
    """How a stereo pair is scored.

    name: key in result dicts. views: ``"both"`` averages left and right, ``"left"`` scores
    the left view only. crop_left: columns dropped on the left of each scored view (after the
    border crop). crop_border: pixels dropped on every side. y_channel: score MATLAB luma Y
    instead of RGB. ssim_window: ``"uniform"`` (7 x 7) or ``"gaussian"`` (11 x 11, sigma 1.5).
    """

    name: str
    views: Literal["both", "left"] = "both"
    crop_left: int = 0
    crop_border: int = 0
    y_channel: bool = False
    ssim_window: Window = "uniform"

    def __post_init__(self) -> None:
        if self.views not in ("both", "left"):
            raise InputError(f"protocol {self.name}: views must be 'both' or 'left'")
        if self.ssim_window not in ("uniform", "gaussian"):
            raise InputError(f"protocol {self.name}: ssim_window must be 'uniform' or "
                             "'gaussian'")
        if self.crop_left < 0 or self.crop_border < 0:
            raise InputError(f"protocol {self.name}: crops must be >= 0")


STEREO = Protocol("stereo")
LEFT = Protocol("left", views="left", crop_left=64)


def basicsr_protocol(crop_border: int, y_channel: bool = True) -> Protocol:
    """BasicSR-style scoring of both views: border crop, Y (or RGB), Gaussian SSIM."""
    name = f"basicsr-{'y' if y_channel else 'rgb'}-crop{crop_border}"
    return Protocol(name, crop_border=crop_border, y_channel=y_channel,
                    ssim_window="gaussian")


PROTOCOL_NAMES = ("stereo", "left", "basicsr", "basicsr-rgb")
METRIC_NAMES = ("psnr", "ssim", "lpips", "consistency")


def parse_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    """``"psnr,ssim,lpips"`` (or a sequence of names) -> checked, de-duplicated names in the
    order given; :class:`InputError` for unknown names or an empty choice."""
    items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = tuple(dict.fromkeys(str(n).strip().lower() for n in items if str(n).strip()))
    if not names:
        raise InputError(f"choose at least one metric of {', '.join(METRIC_NAMES)}")
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown:
        raise InputError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRIC_NAMES)}")
    return names


def get_protocol(name: str, scale: int = 4) -> Protocol:
    """A protocol by name: ``stereo``, ``left``, ``basicsr`` (Y, crop = ``scale``) or
    ``basicsr-rgb`` (RGB, crop = ``scale``)."""
    key = name.strip().lower()
    if key == "stereo":
        return STEREO
    if key == "left":
        return LEFT
    if key == "basicsr":
        return basicsr_protocol(scale, y_channel=True)
    if key == "basicsr-rgb":
        return basicsr_protocol(scale, y_channel=False)
    raise InputError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOL_NAMES)}")


def _view_scores(sr: np.ndarray, hr: np.ndarray, p: Protocol, metrics: Sequence[str],
                 lpips: LPIPS | None) -> dict[str, float]:
    try:
        x = crop_image(sr, p.crop_border, p.crop_left)
        y = crop_image(hr, p.crop_border, p.crop_left)
    except InputError as exc:
        raise InputError(f"protocol {p.name!r}: {exc}; score larger images or leave this "
                         "protocol out") from None
    out: dict[str, float] = {}
    if "lpips" in metrics:
        assert lpips is not None
        out["lpips"] = lpips_from_arrays(lpips, x, y)
    if p.y_channel:
        x, y = rgb_to_y(x), rgb_to_y(y)
    if "psnr" in metrics:
        out["psnr"] = psnr_from_arrays(x, y)
    if "ssim" in metrics:
        out["ssim"] = ssim_from_arrays(x, y, p.ssim_window)
    return out


def score_pair(sr_left: Image, sr_right: Image, hr_left: Image, hr_right: Image,
               protocols: Sequence[Protocol] = (STEREO, LEFT), *,
               quantize: bool = True, metrics: str | Sequence[str] = ("psnr", "ssim"),
               lpips: LPIPS | None = None, disparity: np.ndarray | None = None,
               occlusion_tol: float | None = 0.5) -> dict[str, dict[str, float]]:
    """Scores of an SR pair against its HR pair under several protocols at once.

    Images: (H, W[, C]) arrays or (C, H, W) tensors, uint8/uint16 or float in [0, 1] (floats
    quantised to 8 bits unless ``quantize=False``); each SR view must match its HR view in
    size. ``metrics``: names of :data:`METRIC_NAMES` (see the module docstring); ``lpips``
    is required for ``"lpips"``, ``disparity`` ((H, W) HR left-view disparity in pixels) for
    ``"consistency"``. Returns ``{protocol.name: {metric: value}}``, e.g.
    ``{"stereo": {"psnr": dB, "ssim": value}}`` by default.
    """
    chosen = parse_metrics(metrics)
    if "lpips" in chosen and lpips is None:
        raise InputError("metric 'lpips' needs an LPIPS module (lpips=load_lpips(...))")
    if lpips is not None and not isinstance(lpips, LPIPS):
        raise InputError(f"lpips must be an LPIPS module, got {type(lpips).__name__} "
                         f"{lpips!r:.40}; build it once with lpips=load_lpips('alex') (or 'vgg')")
    if "consistency" in chosen and disparity is None:
        raise InputError("metric 'consistency' needs the HR left view's disparity map "
                         "(disparity=...)")
    names = [p.name for p in protocols]
    if len(set(names)) != len(names):
        raise InputError(f"protocol names must be unique, got {names}")
    srl = to_scoring_array(sr_left, "SR left view", quantize)
    hrl = to_scoring_array(hr_left, "HR left view", quantize)
    check_same_shape(srl, hrl, "SR and HR left views")
    need_right = any(p.views == "both" for p in protocols) or "consistency" in chosen
    if need_right:
        srr = to_scoring_array(sr_right, "SR right view", quantize)
        hrr = to_scoring_array(hr_right, "HR right view", quantize)
        check_same_shape(srr, hrr, "SR and HR right views")
    warp: dict[str, float] = {}
    if "consistency" in chosen:
        assert disparity is not None
        c = stereo_consistency(sr_left, sr_right, hr_left, hr_right, disparity, occlusion_tol)
        warp = {"consistency": c.excess, "warp_error_sr": c.sr, "warp_error_hr": c.hr}
    out: dict[str, dict[str, float]] = {}
    for p in protocols:
        s_l = _view_scores(srl, hrl, p, chosen, lpips)
        if p.views == "left":
            scores = {k: s_l[k] for k in ("psnr", "ssim", "lpips") if k in s_l}
            if "lpips" in s_l:
                scores["lpips_left"] = s_l["lpips"]
            out[p.name] = scores
            continue
        s_r = _view_scores(srr, hrr, p, chosen, lpips)
        scores = {k: (s_l[k] + s_r[k]) / 2.0 for k in ("psnr", "ssim", "lpips") if k in s_l}
        if "lpips" in s_l:
            scores["lpips_left"], scores["lpips_right"] = s_l["lpips"], s_r["lpips"]
        scores.update(warp)
        out[p.name] = scores
    return out


def mean_scores(per_pair: Iterable[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Average :func:`score_pair` results over pairs (per protocol and metric)."""
    sums: dict[str, dict[str, float]] = {}
    count = 0
    for scores in per_pair:
        count += 1
        for proto, metrics in scores.items():
            slot = sums.setdefault(proto, {})
            for key, value in metrics.items():
                slot[key] = slot.get(key, 0.0) + value
    if count == 0:
        raise InputError("no pairs to average")
    return {proto: {k: v / count for k, v in m.items()} for proto, m in sums.items()}

