"""Realistic degradations of stereo pairs: blur, downsampling, noise and JPEG.

The classic degradation model, in the order a camera and its encoder apply it::

    LR = JPEG( clip( downsample(HR * k, s) + gaussian noise + poisson noise ) )

Each stage is drawn at random with its own probability (the NTIRE 2023 stereo SR track 3
setting: blur + bicubic downsampling + noise + JPEG). A stereo pair comes from one camera rig,
so by default both views share ONE draw: the same blur kernel, downsampling method, noise levels,
noise field and JPEG quality. ``per_view: true`` draws everything independently per view;
``independent_noise: true`` keeps the shared settings but gives each sensor its own noise field.

The HR views are first cropped (bottom/right) to a multiple of the scale, so that an LR image
of h x w pixels corresponds exactly to the top-left h*s x w*s HR pixels. With ``config=None``
:func:`degrade_pair` is the plain MATLAB bicubic downsampling used by the bicubic benchmarks.

Configs are frozen dataclasses; :meth:`DegradationConfig.from_dict` / ``from_yaml`` reject
unknown keys by name. Units: blur sigmas in HR pixels, rotation in degrees, Gaussian noise sigma
on the 0..255 scale, JPEG quality 1..100.
"""

from __future__ import annotations

import dataclasses
import io as _io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..imageops import modcrop
from .bicubic import METHODS, imresize

__all__ = [
    "BlurConfig", "DegradationConfig", "DegradationParams", "DownsampleConfig",
    "GaussianNoiseConfig", "JPEGConfig", "PoissonNoiseConfig", "add_gaussian_noise",
    "add_poisson_noise", "apply_blur", "bicubic_pair", "degrade_image", "degrade_pair",
    "gaussian_kernel", "jpeg_compress", "sample_params",
]


# ----------------------------------------------------------------------------------- config

def _pair(name: str, value: Any, lo: float, hi: float, integer: bool = False
          ) -> tuple[Any, Any]:
    """Validate a [low, high] range inside [lo, hi]; a single number means a fixed value."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = value
        a, b = (int(a), int(b)) if integer else (float(a), float(b))
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number or a [low, high] pair, got {value!r}") from None
    if not (lo <= a <= b <= hi):
        raise InputError(f"{name} must satisfy {lo} <= low <= high <= {hi}, got [{a}, {b}]")
    return a, b


def _prob(name: str, value: Any) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a probability in [0, 1], got {value!r}") from None
    if not 0.0 <= p <= 1.0:
        raise InputError(f"{name} must be a probability in [0, 1], got {value!r}")
    return p


@dataclass(frozen=True)
class BlurConfig:
    """Gaussian blur of the HR views before downsampling.

    ``kernel_size``: [min, max] odd sizes, drawn uniformly among the odd sizes in the range.
    ``sigma``: [min, max] standard deviation in HR pixels (for anisotropic kernels both axes are
    drawn from it). ``isotropic_prob``: chance of an isotropic kernel, else anisotropic with a
    rotation drawn uniformly from ``rotation`` (degrees).
    """

    prob: float = 1.0
    kernel_size: tuple[int, int] = (7, 21)
    sigma: tuple[float, float] = (0.2, 3.0)
    isotropic_prob: float = 0.5
    rotation: tuple[float, float] = (0.0, 180.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prob", _prob("blur.prob", self.prob))
        ks = _pair("blur.kernel_size", self.kernel_size, 1, 101, integer=True)
        if ks[0] % 2 == 0 or ks[1] % 2 == 0:
            raise InputError(f"blur.kernel_size must be odd sizes, got {list(ks)}")
        object.__setattr__(self, "kernel_size", ks)
        object.__setattr__(self, "sigma", _pair("blur.sigma", self.sigma, 1e-3, 100.0))
        object.__setattr__(self, "isotropic_prob",
                           _prob("blur.isotropic_prob", self.isotropic_prob))
        object.__setattr__(self, "rotation",
                           _pair("blur.rotation", self.rotation, -360.0, 360.0))


@dataclass(frozen=True)
class DownsampleConfig:
    """Downsampling by the scale factor; ``methods`` are drawn uniformly (MATLAB kernels)."""

    methods: tuple[str, ...] = ("bicubic",)

    def __post_init__(self) -> None:
        methods = (self.methods,) if isinstance(self.methods, str) else tuple(self.methods)
        if not methods:
            raise InputError("downsample.methods must name at least one method")
        for m in methods:
            if m not in METHODS:
                raise InputError(f"downsample.methods: unknown method {m!r}; use one of "
                                 f"{', '.join(METHODS)}")
        object.__setattr__(self, "methods", methods)


@dataclass(frozen=True)
class GaussianNoiseConfig:
    """Additive white Gaussian noise at LR resolution.

    ``sigma``: [min, max] standard deviation on the 0..255 scale. ``grey_prob``: chance that one
    noise field is shared by all colour channels (luminance noise), else per channel.
    """

    prob: float = 0.5
    sigma: tuple[float, float] = (1.0, 25.0)
    grey_prob: float = 0.4

    def __post_init__(self) -> None:
        object.__setattr__(self, "prob", _prob("gaussian_noise.prob", self.prob))
        object.__setattr__(self, "sigma", _pair("gaussian_noise.sigma", self.sigma, 0.0, 255.0))
        object.__setattr__(self, "grey_prob",
                           _prob("gaussian_noise.grey_prob", self.grey_prob))


@dataclass(frozen=True)
class PoissonNoiseConfig:
    """Signal-dependent (shot) noise at LR resolution.

    An intensity ``I`` in [0, 1] becomes ``I + scale * (Poisson(255 I) / 255 - I)``: noise with
    standard deviation ``scale * sqrt(I / 255)``. ``scale``: [min, max]. ``grey_prob``: chance
    that the noise is drawn on the grey level and shared by all channels.
    """

    prob: float = 0.5
    scale: tuple[float, float] = (0.05, 3.0)
    grey_prob: float = 0.4

    def __post_init__(self) -> None:
        object.__setattr__(self, "prob", _prob("poisson_noise.prob", self.prob))
        object.__setattr__(self, "scale", _pair("poisson_noise.scale", self.scale, 0.0, 100.0))
        object.__setattr__(self, "grey_prob", _prob("poisson_noise.grey_prob", self.grey_prob))


@dataclass(frozen=True)
class JPEGConfig:
    """JPEG compression (Pillow, 4:2:0 chroma subsampling) at a quality in [min, max]."""

    prob: float = 1.0
    quality: tuple[int, int] = (30, 95)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prob", _prob("jpeg.prob", self.prob))
        object.__setattr__(self, "quality",
                           _pair("jpeg.quality", self.quality, 1, 100, integer=True))


_SECTIONS: dict[str, type] = {
    "blur": BlurConfig,
    "downsample": DownsampleConfig,
    "gaussian_noise": GaussianNoiseConfig,
    "poisson_noise": PoissonNoiseConfig,
    "jpeg": JPEGConfig,
}


@dataclass(frozen=True)
class DegradationConfig:
    """The whole degradation: one section per stage, plus how the two views share draws."""

    blur: BlurConfig = field(default_factory=BlurConfig)
    downsample: DownsampleConfig = field(default_factory=DownsampleConfig)
    gaussian_noise: GaussianNoiseConfig = field(default_factory=GaussianNoiseConfig)
    poisson_noise: PoissonNoiseConfig = field(default_factory=PoissonNoiseConfig)
    jpeg: JPEGConfig = field(default_factory=JPEGConfig)
    per_view: bool = False
    independent_noise: bool = False

    def __post_init__(self) -> None:
        for name in ("per_view", "independent_noise"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DegradationConfig:
        """Build from a nested mapping (parsed YAML); unknown keys raise InputError naming them.

        Missing sections or keys take the defaults. ``null`` for a section disables that stage.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InputError(f"degradation config must be a mapping, got {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in _SECTIONS:
                section = _SECTIONS[key]
                if value is None and key != "downsample":
                    kwargs[key] = section(prob=0.0)
                    continue
                if not isinstance(value, Mapping):
                    raise InputError(f"{key} must be a mapping of settings, got {value!r}")
                names = {f.name for f in dataclasses.fields(section)}
                for sub in value:
                    if sub not in names:
                        raise InputError(f"unknown key '{key}.{sub}' in degradation config; "
                                         f"valid keys: {', '.join(sorted(names))}")
                try:
                    kwargs[key] = section(**value)
                except TypeError as exc:
                    raise InputError(f"{key}: {exc}") from None
            elif key in ("per_view", "independent_noise"):
                kwargs[key] = value
            else:
                valid = sorted([*_SECTIONS, "per_view", "independent_noise"])
                raise InputError(f"unknown key '{key}' in degradation config; valid keys: "
                                 f"{', '.join(valid)}")
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> DegradationConfig:
        """Load a YAML file (see :meth:`from_dict`); bad files raise a one-line InputError."""
        import yaml

        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            raise InputError(f"{path}: degradation config not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read degradation config ({exc})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" at line {where.line + 1}" if where is not None else ""
            raise InputError(f"{path}: invalid YAML{line}") from None
        try:
            return cls.from_dict(data)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for ranges), loadable again by :meth:`from_dict`."""
        def plain(v: Any) -> Any:
            return list(v) if isinstance(v, tuple) else v
        out: dict[str, Any] = {}
        for key in _SECTIONS:
            out[key] = {k: plain(v) for k, v in dataclasses.asdict(getattr(self, key)).items()}
        out["per_view"] = self.per_view
        out["independent_noise"] = self.independent_noise
        return out


@dataclass(frozen=True)
class DegradationParams:
    """One concrete draw of the degradation (``None`` = stage skipped).

    ``blur``: (kernel size, sigma_x, sigma_y, rotation in degrees) of the Gaussian kernel;
    ``gaussian_sigma`` on the 0..255 scale; ``noise_seed`` seeds the noise fields.
    """

    blur: tuple[int, float, float, float] | None
    method: str
    gaussian_sigma: float | None
    gaussian_grey: bool
    poisson_scale: float | None
    poisson_grey: bool
    jpeg_quality: int | None
    noise_seed: int

    @property
    def kernel(self) -> np.ndarray | None:
        """The (k, k) float64 blur kernel (sums to 1), or ``None`` without blur."""
        return None if self.blur is None else gaussian_kernel(*self.blur)

    @property
    def is_plain_resize(self) -> bool:
        """True when only the downsampling is drawn (no blur, noise or JPEG)."""
        return (self.blur is None and self.gaussian_sigma is None
                and self.poisson_scale is None and self.jpeg_quality is None)


# ------------------------------------------------------------------------------ operations

def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None,
                    rotation: float = 0.0) -> np.ndarray:
    """(size, size) float64 Gaussian blur kernel centred on the middle pixel, summing to 1.

    ``sigma_x`` / ``sigma_y``: standard deviations (pixels) along the kernel's own axes, the
    x axis turned by ``rotation`` degrees (counter-clockwise, image y pointing down).
    ``sigma_y=None`` gives an isotropic kernel.
    """
    if size < 1 or size % 2 == 0:
        raise InputError(f"blur kernel size must be a positive odd number, got {size}")
    sy = sigma_x if sigma_y is None else sigma_y
    if not (sigma_x > 0 and sy > 0):
        raise InputError(f"blur sigmas must be positive, got {sigma_x}, {sy}")
    theta = math.radians(rotation)
    c, s = math.cos(theta), math.sin(theta)
    r = np.array([[c, -s], [s, c]])
    cov = r @ np.diag([sigma_x ** 2, sy ** 2]) @ r.T
    inv = np.linalg.inv(cov)
    half = size // 2
    ax = np.arange(-half, half + 1, dtype=np.float64)
    xx, yy = np.meshgrid(ax, -ax)  # y up, so a positive rotation turns counter-clockwise
    q = inv[0, 0] * xx * xx + 2 * inv[0, 1] * xx * yy + inv[1, 1] * yy * yy
    k = np.exp(-0.5 * q)
    return k / k.sum()


def _reflect101(index: np.ndarray, n: int) -> np.ndarray:
    """Map any integer positions into 0..n-1 by mirroring without repeating the edge."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    m = np.mod(index, period)
    return np.where(m < n, m, period - m)


def apply_blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve (H, W, C) ``img`` with a (kh, kw) odd-sized kernel; float64, same size out.

    Borders are mirrored without repeating the edge pixel (OpenCV's default, scipy's
    ``mode='mirror'``), also when the kernel is larger than the image. Computed with FFTs.
    """
    kh, kw = kernel.shape
    ph, pw = kh // 2, kw // 2
    h, w = img.shape[:2]
    rows = _reflect101(np.arange(-ph, h + ph), h)
    cols = _reflect101(np.arange(-pw, w + pw), w)
    x = img.astype(np.float64)[rows][:, cols]
    fh, fw = _fast_len(x.shape[0]), _fast_len(x.shape[1])
    spec = np.fft.rfft2(x, s=(fh, fw), axes=(0, 1)) * np.fft.rfft2(kernel, s=(fh, fw))[..., None]
    full = np.fft.irfft2(spec, s=(fh, fw), axes=(0, 1))
    # circular convolution: rows/cols from kh-1 / kw-1 on are free of wrap-around
    return full[2 * ph:2 * ph + h, 2 * pw:2 * pw + w]


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: an FFT size without large prime factors."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def add_gaussian_noise(img: np.ndarray, sigma: float, grey: bool,
                       rng: np.random.Generator) -> np.ndarray:
    """``img`` (H, W, C) float in [0, 1] plus N(0, (sigma/255)^2) noise (not clipped)."""
    shape = img.shape[:2] + ((1,) if grey else img.shape[2:])
    return img + rng.standard_normal(shape) * (sigma / 255.0)


def add_poisson_noise(img: np.ndarray, scale: float, grey: bool,
                      rng: np.random.Generator) -> np.ndarray:
    """Shot noise of std ``scale * sqrt(I / 255)`` on (H, W, C) float [0, 1] (not clipped)."""
    base = np.clip(img, 0.0, 1.0)
    if grey and base.shape[2] >= 3:
        base = (base[..., :3] @ np.array([0.299, 0.587, 0.114]))[..., None]
    elif grey:
        base = base.mean(axis=2, keepdims=True)
    noise = rng.poisson(base * 255.0) / 255.0 - base
    return img + scale * noise


def jpeg_compress(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode (H, W, C) float [0, 1] (C = 1 or 3) as JPEG; float [0, 1] back."""
    from PIL import Image

    u8 = np.clip(np.floor(np.clip(img, 0.0, 1.0) * 255.0 + 0.5), 0, 255).astype(np.uint8)
    pil = Image.fromarray(u8[..., 0] if u8.shape[2] == 1 else u8)
    buf = _io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as dec:
        out = np.asarray(dec, dtype=np.uint8)
    out = out[..., None] if out.ndim == 2 else out
    return out.astype(np.float64) / 255.0


# ------------------------------------------------------------------------------- sampling

def _odd_sizes(lo: int, hi: int) -> list[int]:
    return list(range(lo if lo % 2 else lo + 1, hi + 1, 2))


def sample_params(config: DegradationConfig, rng: np.random.Generator) -> DegradationParams:
    """Draw one concrete degradation from ``config`` with ``rng`` (a numpy Generator)."""
    blur_draw = None
    b = config.blur
    if rng.random() < b.prob:
        size = int(rng.choice(_odd_sizes(*b.kernel_size)))
        if rng.random() < b.isotropic_prob:
            sigma = float(rng.uniform(*b.sigma))
            blur_draw = (size, sigma, sigma, 0.0)
        else:
            sx, sy = (float(v) for v in rng.uniform(*b.sigma, size=2))
            blur_draw = (size, sx, sy, float(rng.uniform(*b.rotation)))
    method = str(config.downsample.methods[int(rng.integers(len(config.downsample.methods)))])
    g, p, j = config.gaussian_noise, config.poisson_noise, config.jpeg
    g_sigma, g_grey = None, False
    if rng.random() < g.prob:
        g_sigma, g_grey = float(rng.uniform(*g.sigma)), bool(rng.random() < g.grey_prob)
    p_scale, p_grey = None, False
    if rng.random() < p.prob:
        p_scale, p_grey = float(rng.uniform(*p.scale)), bool(rng.random() < p.grey_prob)
    quality = int(rng.integers(j.quality[0], j.quality[1] + 1)) if rng.random() < j.prob else None
    return DegradationParams(blur=blur_draw, method=method, gaussian_sigma=g_sigma,
                             gaussian_grey=g_grey, poisson_scale=p_scale, poisson_grey=p_grey,
                             jpeg_quality=quality, noise_seed=int(rng.integers(2 ** 63)))


# ------------------------------------------------------------------------------ pipelines

def _check_image(img: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise InputError(f"{name} must be (H, W) or (H, W, C) with C in 1..4, got {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16) and not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{name} must be uint8, uint16 or float, got {arr.dtype}")
    return arr


def _check_scale(scale: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale!r}")
    return int(scale)


def _to_unit(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float64) / 65535.0
    return arr.astype(np.float64)


def _from_unit(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype in (np.uint8, np.uint16):
        top = 255.0 if dtype == np.uint8 else 65535.0
        return np.clip(np.floor(np.clip(x, 0.0, 1.0) * top + 0.5), 0, top).astype(dtype)
    return np.clip(x, 0.0, 1.0).astype(dtype)


def degrade_image(hr: np.ndarray, scale: int, params: DegradationParams,
                  noise_rng: np.random.Generator | None = None) -> np.ndarray:
    """Apply one drawn degradation to one view.

    Args:
        hr: (H, W) or (H, W, C) uint8/uint16, or float in [0, 1]. With C = 2 or 4 the last
            channel is alpha: it is only downsampled (no blur, noise or JPEG).
        scale: integer downsampling factor; H and W are first cropped to multiples of it.
        params: the draw (:func:`sample_params`).
        noise_rng: generator of the noise fields; default one seeded with ``params.noise_seed``.

    Returns:
        (H // scale, W // scale[, C]) array of ``hr``'s dtype (float results clipped to [0, 1]).
    """
    arr = modcrop(_check_image(hr, "hr"), _check_scale(scale))
    if params.is_plain_resize:  # MATLAB's integer rounding, no float round trip
        out = imresize(arr, 1.0 / scale, method=params.method)
        return out if arr.dtype in (np.uint8, np.uint16) else np.clip(out, 0.0, 1.0)
    squeeze = arr.ndim == 2
    x = _to_unit(arr[..., None] if squeeze else arr)
    alpha = None
    if x.shape[2] in (2, 4):
        x, alpha = x[..., :-1], x[..., -1:]
    kernel = params.kernel
    if kernel is not None:
        x = apply_blur(x, kernel)
    x = imresize(x, 1.0 / scale, method=params.method)
    rng = noise_rng if noise_rng is not None else np.random.default_rng(params.noise_seed)
    if params.gaussian_sigma is not None:
        x = add_gaussian_noise(x, params.gaussian_sigma, params.gaussian_grey, rng)
    if params.poisson_scale is not None:
        x = add_poisson_noise(x, params.poisson_scale, params.poisson_grey, rng)
    x = np.clip(x, 0.0, 1.0)
    if params.jpeg_quality is not None:
        x = jpeg_compress(x, params.jpeg_quality)
    if alpha is not None:
        x = np.concatenate([x, np.clip(imresize(alpha, 1.0 / scale), 0.0, 1.0)], axis=2)
    out = _from_unit(x, arr.dtype)
    return out[..., 0] if squeeze else out


def bicubic_pair(hr_left: np.ndarray, hr_right: np.ndarray,
                 scale: int) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB bicubic x1/scale of both views (after cropping to multiples of ``scale``).

    The bicubic-benchmark LR images: uint8 in, uint8 out, exactly as MATLAB's
    ``imresize(img, 1/scale, 'bicubic')`` rounds them.
    """
    s = _check_scale(scale)
    left, right = _check_image(hr_left, "hr_left"), _check_image(hr_right, "hr_right")
    return imresize(modcrop(left, s), 1.0 / s), imresize(modcrop(right, s), 1.0 / s)


def degrade_pair(hr_left: np.ndarray, hr_right: np.ndarray, scale: int,
                 config: DegradationConfig | None = None,
                 rng: np.random.Generator | int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Degrade a stereo pair to (lr_left, lr_right).

    Args:
        hr_left, hr_right: (H, W[, C]) uint8/uint16 or float [0, 1] views (sizes may differ).
        scale: integer factor; each LR view is (H // scale, W // scale).
        config: the random degradation; ``None`` = plain MATLAB bicubic (:func:`bicubic_pair`).
        rng: numpy Generator or an int seed; the same seed gives the same LR pair.

    By default both views share one draw (kernel, method, noise levels and noise field, JPEG
    quality): identical views give identical LR. ``config.per_view`` draws each view
    independently; ``config.independent_noise`` shares the settings but not the noise field.
    """
    if config is None:
        return bicubic_pair(hr_left, hr_right, scale)
    if not isinstance(config, DegradationConfig):
        raise InputError(f"config must be a DegradationConfig, got {type(config).__name__}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if config.per_view:
        p_left, p_right = sample_params(config, gen), sample_params(config, gen)
    else:
        p_left = sample_params(config, gen)
        seed = int(gen.integers(2 ** 63)) if config.independent_noise else p_left.noise_seed
        p_right = dataclasses.replace(p_left, noise_seed=seed)
    return degrade_image(hr_left, scale, p_left), degrade_image(hr_right, scale, p_right)
