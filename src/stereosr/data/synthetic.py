"""Synthetic rectified stereo pairs rendered from a single photograph.

The scene is a stack of textured layers seen by two rectified cameras. Each layer has

- a disparity field ``d(u, y)`` in output (HR) pixels: :class:`Planar` (constant or a tilted
  plane) or :class:`Smooth` (a sum of slow cosines);
- a shape: the whole frame (the background) or a :class:`Blob` (a rotated superellipse with a
  wavy outline), for objects in front;
- a texture: the photograph, shifted by ``texture_offset`` photo pixels (foreground objects
  show another part of the photo than the background behind them).

``u`` is the cyclopean column of a scene point: it appears at ``x = u + d/2`` in the left view
and ``x = u - d/2`` in the right view, so ``x_right = x_left - d`` and rows are epipolar lines.
Each output pixel looks up, for every layer, the scene point that projects there (solved
exactly for planes, by fixed-point iteration for smooth fields) and keeps the one with the
largest disparity (a z-buffer: nearer layers occlude). Because every layer's texture is the
photo, which extends beyond the frame, points revealed in one view only (disocclusions) and
at the borders always have content: no holes to fill. Both views sample the texture at
fractional positions (cubic interpolation), so neither is systematically sharper.

Views are rendered at ``supersample`` times the output resolution and reduced with an
antialiasing cubic filter, which also smooths object outlines. The ``photo`` must therefore be
given at ``supersample`` times the output scale: one output pixel covers ``supersample`` x
``supersample`` photo pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import InputError

__all__ = [
    "FIELD_KINDS",
    "Blob",
    "Layer",
    "Planar",
    "Smooth",
    "SyntheticPair",
    "occlusion_mask",
    "random_scene",
    "render_scene",
    "synthesize_pair",
]

#: field kinds of :func:`random_scene`, with the probabilities ``"mixed"`` draws them with
FIELD_KINDS: dict[str, float] = {"constant": 0.15, "planar": 0.2, "layers": 0.4, "smooth": 0.25}

_MAX_SLOPE = 1.5  # |dd/du| beyond which a layer would fold over itself in one view


class SyntheticPair(NamedTuple):
    """Rendered views (H, W, 3) float32 in [0, 1] and the left view's disparity (H, W) float32
    in pixels (``x_right = x_left - disparity``)."""

    left: np.ndarray
    right: np.ndarray
    disparity: np.ndarray


@dataclass(frozen=True)
class Planar:
    """``d(u, y) = d0 + gx (u - cx) + gy (y - cy)`` pixels; ``gx = gy = 0`` is constant."""

    d0: float
    gx: float = 0.0
    gy: float = 0.0
    cx: float = 0.0
    cy: float = 0.0

    def __call__(self, u: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.d0 + self.gx * (u - self.cx) + self.gy * (y - self.cy)

    def solve(self, x: np.ndarray, y: np.ndarray,
              sigma: float) -> tuple[np.ndarray, np.ndarray]:
        """``(u, d(u, y))`` with ``u + sigma * d(u, y) = x`` (closed form)."""
        u = (x - sigma * (self.d0 - self.gx * self.cx + self.gy * (y - self.cy))) / (
            1.0 + sigma * self.gx)
        return u, self(u, y)

    def max_slope_x(self) -> float:
        return abs(self.gx)

    def bounds(self, u: tuple[float, float], y: tuple[float, float]) -> tuple[float, float]:
        """(min, max) of ``d`` over the box ``u x y`` (at its corners)."""
        vals = [float(self(np.float64(a), np.float64(b))) for a in u for b in y]
        return min(vals), max(vals)


@dataclass(frozen=True)
class Smooth:
    """``d(u, y) = base + sum_k amp_k cos(2 pi (fx_k u + fy_k y) + phase_k)`` pixels.

    ``waves`` holds ``(amp, fx, fy, phase)`` tuples, frequencies in cycles per pixel.
    """

    base: float
    waves: tuple[tuple[float, float, float, float], ...]

    def __call__(self, u: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = np.full(np.broadcast_shapes(np.shape(u), np.shape(y)), self.base, dtype=np.float64)
        for amp, fx, fy, phase in self.waves:
            d += amp * np.cos(2.0 * math.pi * (fx * u + fy * y) + phase)
        return d

    def solve(self, x: np.ndarray, y: np.ndarray, sigma: float,
              iterations: int = 60) -> tuple[np.ndarray, np.ndarray]:
        """``(u, d(u, y))`` with ``u + sigma * d(u, y) = x``, for x (1, C) and y (R, 1).

        Fixed-point iteration (converges as ``(|sigma| * max_slope_x) ** n``; stops when the
        update falls below 1e-6 pixels or after ``iterations`` steps) on
        ``d`` tabulated every quarter pixel along each row and interpolated linearly (error
        ``max |d''| / 128``: below 1e-3 pixels for the slow fields :func:`random_scene` makes).
        """
        x = np.asarray(x, dtype=np.float64).reshape(1, -1)
        y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
        step = 0.25
        lo, hi = self.bounds((0.0, 0.0), (0.0, 0.0))
        reach = abs(sigma) * max(abs(lo), abs(hi)) + 2.0
        u_tab = np.arange(x.min() - reach, x.max() + reach + step, step)
        table = np.full((y.shape[0], u_tab.size), self.base)
        for amp, fx, fy, phase in self.waves:
            au = 2.0 * math.pi * fx * u_tab[None, :]
            by = 2.0 * math.pi * fy * y + phase
            table += amp * (np.cos(au) * np.cos(by) - np.sin(au) * np.sin(by))
        flat = table.ravel()
        row_start = (np.arange(y.shape[0]) * u_tab.size)[:, None]
        last = u_tab.size - 2

        def lookup(u: np.ndarray) -> np.ndarray:
            j = (u - u_tab[0]) * (1.0 / step)
            j0 = np.clip(np.floor(j), 0, last)
            t = j - j0
            k = row_start + j0.astype(np.int64)
            a = np.take(flat, k)
            return a + (np.take(flat, k + 1) - a) * t

        u = x - sigma * lookup(np.broadcast_to(x, (y.shape[0], x.shape[1])))
        for _ in range(iterations):
            nxt = x - sigma * lookup(u)
            done = np.abs(nxt - u).max() < 1e-6
            u = nxt
            if done:
                break
        return u, lookup(u)

    def max_slope_x(self) -> float:
        return sum(abs(a * 2.0 * math.pi * fx) for a, fx, _, _ in self.waves)

    def bounds(self, u: tuple[float, float], y: tuple[float, float]) -> tuple[float, float]:
        spread = sum(abs(a) for a, _, _, _ in self.waves)
        return self.base - spread, self.base + spread


@dataclass(frozen=True)
class Blob:
    """Rotated superellipse around (cx, cy) with half-axes (ax, ay) pixels, exponent ``power``
    (2 = ellipse, larger = boxier), outline radius scaled by ``1 + sum eps_k cos(k t + phase_k)``
    for ``harmonics`` ``(k, eps_k, phase_k)``."""

    cx: float
    cy: float
    ax: float
    ay: float
    theta: float = 0.0
    power: float = 2.0
    harmonics: tuple[tuple[int, float, float], ...] = ()

    def contains(self, u: np.ndarray, y: np.ndarray) -> np.ndarray:
        du, dy = u - self.cx, y - self.cy
        c, s = math.cos(self.theta), math.sin(self.theta)
        p = (du * c + dy * s) / self.ax
        q = (-du * s + dy * c) / self.ay
        rho = (np.abs(p) ** self.power + np.abs(q) ** self.power) ** (1.0 / self.power)
        limit: np.ndarray | float = 1.0
        if self.harmonics:
            t = np.arctan2(q, p)
            limit = 1.0 + sum(e * np.cos(k * t + ph) for k, e, ph in self.harmonics)
        return np.asarray(rho <= limit)

    def radius(self) -> float:
        """Radius of a circle around (cx, cy) that holds the whole shape."""
        grow = 1.0 + sum(abs(e) for _, e, _ in self.harmonics)
        return math.hypot(self.ax, self.ay) * grow


@dataclass(frozen=True)
class Layer:
    """A textured scene layer; ``mask=None`` covers everything (use for the background).

    ``texture_offset`` is (rows, columns) in photo pixels: the layer point at output
    coordinates (u, y) shows the photo at the supersampled position of (u, y) plus the offset.
    """

    disparity: Planar | Smooth
    texture_offset: tuple[int, float] = (0, 0.0)
    mask: Blob | None = None


# --- rendering -----------------------------------------------------------------------------


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic kernel, a = -0.5."""
    ax = np.abs(x)
    return np.where(ax <= 1, 1.5 * ax**3 - 2.5 * ax**2 + 1,
                    np.where(ax < 2, -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2, 0.0))


def _sample_rows_cubic(photo: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """photo[rows, cols] with cubic interpolation along columns; (N,) int, (N,) float -> (N, C)."""
    hp, wp, c = photo.shape
    flat = photo.reshape(hp * wp, c)
    i0 = np.floor(cols).astype(np.int64)
    t = (cols - i0).astype(np.float32)[:, None]
    t2, t3 = t * t, t * t * t
    weights = (-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1.0,
               -1.5 * t3 + 2.0 * t2 + 0.5 * t, 0.5 * t3 - 0.5 * t2)
    base = np.clip(rows, 0, hp - 1).astype(np.int64) * wp
    out = np.zeros((rows.size, c), dtype=np.float32)
    for j, w in zip(range(-1, 3), weights):
        out += w * np.take(flat, base + np.clip(i0 + j, 0, wp - 1), axis=0)
    return out


def _aa_taps(ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Relative input positions and weights of the antialiasing cubic for a 1/ss reduction."""
    rel = np.arange(-2 * ss + 1, 2 * ss + 1)
    w = _cubic((rel - (ss - 1) / 2.0) / ss)
    keep = w != 0
    w = w[keep] / w[keep].sum()
    return rel[keep], w


def _reduce(img: np.ndarray, ss: int, margin: int, out_hw: tuple[int, int]) -> np.ndarray:
    """Render-resolution (Hr, Wr, ...) -> (H, W, ...) output, margins dropped."""
    rel, w = _aa_taps(ss)
    h, wd = out_hw
    start = ss * margin
    rows = sum(wk * img[start + r:start + r + ss * h:ss] for r, wk in zip(rel, w))
    return sum(wk * rows[:, start + r:start + r + ss * wd:ss] for r, wk in zip(rel, w))


def _footprint(layer: Layer, sigma: float, xs: np.ndarray, ys: np.ndarray
               ) -> tuple[int, int, int, int]:
    """Render-frame (row0, row1, col0, col1) that can show ``layer`` in the view ``sigma``."""
    if layer.mask is None:
        return 0, ys.size, 0, xs.size
    b = layer.mask
    rad = b.radius()
    urange, yrange = (b.cx - rad, b.cx + rad), (b.cy - rad, b.cy + rad)
    lo, hi = layer.disparity.bounds(urange, yrange)
    xlo = urange[0] + min(sigma * lo, sigma * hi)
    xhi = urange[1] + max(sigma * lo, sigma * hi)
    c0, c1 = np.searchsorted(xs, xlo - 1.0), np.searchsorted(xs, xhi + 1.0)
    r0, r1 = np.searchsorted(ys, yrange[0] - 1.0), np.searchsorted(ys, yrange[1] + 1.0)
    return int(r0), int(r1), int(c0), int(c1)


def _render_view(photo: np.ndarray, layers: list[Layer], sigma: float, ss: int,
                 margin: int, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One view at render resolution: (Hr, Wr, 3) colours and (Hr, Wr) disparity (z-buffer)."""
    hr, wr = ys.size, xs.size
    zbuf = np.full((hr, wr), -np.inf)
    owner = np.full((hr, wr), -1, dtype=np.int32)
    ucoord = np.zeros((hr, wr))
    for k, layer in enumerate(layers):
        if layer.disparity.max_slope_x() >= _MAX_SLOPE:
            raise InputError(f"layer {k}: disparity slope along rows must stay below "
                             f"{_MAX_SLOPE} (the surface would fold over itself)")
        r0, r1, c0, c1 = _footprint(layer, sigma, xs, ys)
        if r0 >= r1 or c0 >= c1:
            continue
        x, y = xs[None, c0:c1], ys[r0:r1, None]
        u, d = layer.disparity.solve(x, y, sigma)
        u = np.broadcast_to(u, (r1 - r0, c1 - c0))
        d = np.broadcast_to(d, (r1 - r0, c1 - c0))
        win = d > zbuf[r0:r1, c0:c1]
        if layer.mask is not None:
            win &= layer.mask.contains(u, y)
        zbuf[r0:r1, c0:c1][win] = d[win]
        owner[r0:r1, c0:c1][win] = k
        ucoord[r0:r1, c0:c1][win] = u[win]
    if (owner < 0).any():
        raise InputError("the layers leave parts of the view empty; the first layer must be a "
                         "background without mask")
    img = np.empty((hr, wr, photo.shape[2]), dtype=np.float32)
    rows_all = np.broadcast_to(np.arange(hr)[:, None], (hr, wr))
    for k, layer in enumerate(layers):
        sel = owner == k
        if not sel.any():
            continue
        oy, ox = layer.texture_offset
        cols = ss * (ucoord[sel] + margin) + (ss - 1) / 2.0 + ox
        img[sel] = _sample_rows_cubic(photo, rows_all[sel] + int(oy), cols)
    return img, zbuf


def render_scene(photo: np.ndarray, layers: list[Layer], size: tuple[int, int],
                 supersample: int = 2, margin: int = 2) -> SyntheticPair:
    """Render the left and right views of ``layers`` (the first one the background).

    Args:
        photo: (Hp, Wp, 3) float texture in [0, 1] at ``supersample`` x the output scale.
        layers: scene layers; disparities in output pixels, coordinates in output pixels with
            (0, 0) the centre of the top-left output pixel.
        size: output (H, W).
        supersample: render resolution factor (1 = no antialiasing of outlines).
        margin: extra output pixels rendered around the frame so the reduction filter never
            reaches the border.

    Photo pixels outside the photo are clamped to its edge; :func:`random_scene` chooses
    offsets that never need that.
    """
    h, w = size
    if h < 1 or w < 1 or supersample < 1 or margin < 2:
        raise InputError(f"bad render size {size}, supersample {supersample} or margin {margin}")
    if photo.ndim != 3:
        raise InputError(f"photo must be (H, W, C), got shape {photo.shape}")
    ss = int(supersample)
    render = np.arange(ss * (h + 2 * margin), dtype=np.float64)
    ys = (render - (ss - 1) / 2.0) / ss - margin
    xs = (np.arange(ss * (w + 2 * margin), dtype=np.float64) - (ss - 1) / 2.0) / ss - margin
    tex = np.ascontiguousarray(photo, dtype=np.float32)
    left, zl = _render_view(tex, layers, 0.5, ss, margin, xs, ys)
    right, _ = _render_view(tex, layers, -0.5, ss, margin, xs, ys)
    out_l = np.clip(_reduce(left, ss, margin, size), 0.0, 1.0).astype(np.float32)
    out_r = np.clip(_reduce(right, ss, margin, size), 0.0, 1.0).astype(np.float32)
    s0 = ss * margin
    disp = zl[s0:s0 + ss * h, s0:s0 + ss * w].reshape(h, ss, w, ss).mean(axis=(1, 3))
    return SyntheticPair(out_l, out_r, disp.astype(np.float32))


# --- random scenes -------------------------------------------------------------------------


def _smooth_field(rng: np.random.Generator, lo: float, hi: float, size: tuple[int, int],
                  max_slope: float = 0.3, waves: int = 4) -> Smooth:
    """A random smooth field that stays within [lo, hi] everywhere, |dd/du| <= max_slope.

    Slow cosines (at most 2 cycles per frame side) centred on (lo + hi) / 2 whose amplitudes
    add up to (hi - lo) / 2, reduced further if the slope limit needs it.
    """
    h, w = size
    raw = []
    for _ in range(waves):
        raw.append((rng.uniform(0.3, 1.0), rng.uniform(-2.0, 2.0) / w, rng.uniform(-2.0, 2.0) / h,
                    rng.uniform(0.0, 2.0 * math.pi)))
    scale = (hi - lo) / 2.0 / sum(a for a, _, _, _ in raw)
    slope = Smooth(0.0, tuple(raw)).max_slope_x() * scale
    if slope > max_slope:
        scale *= max_slope / slope
    return Smooth((lo + hi) / 2.0, tuple((a * scale, fx, fy, ph) for a, fx, fy, ph in raw))


def _fit_plane(plane: Planar, u: tuple[float, float], y: tuple[float, float], lo: float,
               hi: float) -> Planar:
    """``plane`` flattened (about its low point) and shifted so it stays in [lo, hi] on the box."""
    low, high = plane.bounds(u, y)
    squeeze = min(1.0, (hi - lo) / (high - low)) if high > low else 1.0
    start = min(max(low, lo), hi - (high - low) * squeeze)
    # d' = start + (d - low) * squeeze, written in the plane's own parameters
    return Planar(start + (plane.d0 - low) * squeeze, plane.gx * squeeze, plane.gy * squeeze,
                  plane.cx, plane.cy)


def _random_plane(rng: np.random.Generator, lo: float, hi: float,
                  size: tuple[int, int]) -> Planar:
    """A plane through random disparities in [lo, hi] at three corners of the frame, kept in
    [lo, hi] over the whole frame (the fourth corner could leave it)."""
    h, w = size
    d_tl, d_tr, d_bl = rng.uniform(lo, hi, size=3)
    plane = Planar(float(d_tl), float((d_tr - d_tl) / max(w - 1, 1)),
                   float((d_bl - d_tl) / max(h - 1, 1)), 0.0, 0.0)
    return _fit_plane(plane, (-4.0, w + 4.0), (-4.0, h + 4.0), lo, hi)


def _random_blob(rng: np.random.Generator, size: tuple[int, int]) -> Blob:
    h, w = size
    short = min(h, w)
    harmonics = tuple((k, float(rng.uniform(0.0, 0.1)), float(rng.uniform(0, 2 * math.pi)))
                      for k in range(2, 6))
    return Blob(cx=float(rng.uniform(-0.1, 1.1) * w), cy=float(rng.uniform(-0.1, 1.1) * h),
                ax=float(rng.uniform(0.08, 0.4) * short), ay=float(rng.uniform(0.08, 0.4) * short),
                theta=float(rng.uniform(0, math.pi)),
                power=float(rng.choice([2.0, 2.0, 3.0, 6.0])), harmonics=harmonics)


def _offset_range(lo: float, hi: float, low_px: float, high_px: float) -> tuple[float, float]:
    """Offsets ``o`` with ``lo + o >= low_px`` and ``hi + o <= high_px``."""
    return low_px - lo, high_px - hi


def random_scene(rng: np.random.Generator, size: tuple[int, int], photo_hw: tuple[int, int],
                 kind: str = "mixed", max_disparity: float = 60.0, supersample: int = 2,
                 margin: int = 2) -> list[Layer]:
    """Random layers for :func:`render_scene`: disparities in [0, max_disparity] output pixels.

    ``kind``: ``constant`` (one fronto-parallel plane), ``planar`` (one tilted plane),
    ``smooth`` (one smooth curved surface), ``layers`` (a planar or smooth background and 1-4
    objects in front, with occlusions) or ``mixed`` (one of them, drawn with the
    probabilities of :data:`FIELD_KINDS`). The texture offsets keep every sample inside a
    photo of ``photo_hw`` pixels; :class:`InputError` if the photo is too small.
    """
    h, w = size
    hp, wp = photo_hw
    ss = supersample
    if kind == "mixed":
        names = list(FIELD_KINDS)
        p = np.array([FIELD_KINDS[n] for n in names])
        kind = names[int(rng.choice(len(names), p=p / p.sum()))]
    if kind not in FIELD_KINDS:
        raise InputError(f"unknown disparity field kind {kind!r}; choose mixed or one of "
                         f"{', '.join(FIELD_KINDS)}")
    dmax = float(max_disparity) * float(rng.uniform(0.15, 1.0))

    def render_x(u: float) -> float:
        return ss * (u + margin) + (ss - 1) / 2.0

    def render_y(y: float) -> float:
        return ss * (y + margin) + (ss - 1) / 2.0

    if kind == "constant":
        background: Planar | Smooth = Planar(float(rng.uniform(0.0, dmax)))
    elif kind == "planar":
        background = _random_plane(rng, 0.0, dmax, size)
    elif kind == "smooth":
        lo = float(rng.uniform(0.0, 0.4 * dmax))
        background = _smooth_field(rng, lo, float(rng.uniform(lo + 0.3 * (dmax - lo), dmax)),
                                   size)
    else:
        bg_hi = float(rng.uniform(0.1, 0.6) * dmax)
        if rng.random() < 0.6:
            background = _random_plane(rng, 0.0, bg_hi, size)
        else:
            background = _smooth_field(rng, 0.0, bg_hi, size)
    # the background's texture must cover every u either view can look up
    frame_u = (-margin - 1.0, w + margin)
    frame_y = (-margin - 1.0, h + margin)
    b_lo, b_hi = background.bounds(frame_u, frame_y)
    reach = max(abs(b_lo), abs(b_hi)) / 2.0 + 1.0
    ox_lo, ox_hi = _offset_range(render_x(frame_u[0] - reach), render_x(frame_u[1] + reach),
                                 1.0, wp - 3.0)
    oy_lo, oy_hi = _offset_range(0.0, ss * (h + 2 * margin) - 1.0, 0.0, hp - 1.0)
    if ox_lo > ox_hi or oy_lo > oy_hi:
        need_w = math.ceil(render_x(frame_u[1] + reach) - render_x(frame_u[0] - reach)) + 5
        raise InputError(f"photo of {wp}x{hp} pixels is too small for a {w}x{h} pair with "
                         f"disparities up to {max(abs(b_lo), abs(b_hi)):.0f} at x{ss} "
                         f"supersampling (needs about {need_w}x{ss * (h + 2 * margin)})")
    layers = [Layer(background, (int(rng.integers(math.ceil(oy_lo), int(oy_hi) + 1)),
                                 float(rng.uniform(ox_lo, ox_hi))))]
    if kind != "layers":
        return layers
    bg_top = b_hi
    for _ in range(int(rng.integers(1, 5))):
        blob = _random_blob(rng, size)
        rad = blob.radius()
        tex_lo, tex_hi = render_x(blob.cx - rad), render_x(blob.cx + rad)
        row_lo = max(render_y(blob.cy - rad), 0.0)
        row_hi = min(render_y(blob.cy + rad), ss * (h + 2 * margin) - 1.0)
        ox_lo, ox_hi = _offset_range(tex_lo, tex_hi, 1.0, wp - 3.0)
        oy_lo, oy_hi = _offset_range(row_lo, row_hi, 0.0, hp - 1.0)
        if ox_lo > ox_hi or oy_lo > oy_hi:
            continue  # object larger than the photo allows; leave it out
        gx, gy = rng.uniform(-0.05, 0.05, size=2)
        top = max(dmax, bg_top + 2.0)
        plane = Planar(float(rng.uniform(bg_top + 1.0, top)), float(gx), float(gy), blob.cx,
                       blob.cy)
        # in front of the background everywhere, and no further than the largest disparity
        plane = _fit_plane(plane, (blob.cx - rad, blob.cx + rad), (blob.cy - rad, blob.cy + rad),
                           bg_top + 0.5, top)
        offset = (int(rng.integers(math.ceil(oy_lo), math.floor(oy_hi) + 1)),
                  float(rng.uniform(ox_lo, ox_hi)))
        layers.append(Layer(plane, offset, blob))
    return layers


def synthesize_pair(photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
                    kind: str = "mixed", max_disparity: float = 60.0,
                    supersample: int = 2) -> SyntheticPair:
    """A random stereo pair of ``size`` (H, W) from ``photo`` ((Hp, Wp, 3) float in [0, 1] at
    ``supersample`` x the output scale); see :func:`random_scene` for ``kind``."""
    layers = random_scene(rng, size, photo.shape[:2], kind, max_disparity, supersample)
    return render_scene(photo, layers, size, supersample)


def occlusion_mask(disparity: np.ndarray, tolerance: float = 0.5) -> np.ndarray:
    """Left-view pixels that the right view does not show, (H, W) bool.

    A pixel at column ``x`` with disparity ``d`` lands at ``x - d`` in the right view; it is
    hidden when that position is outside the right view or when another left pixel landing
    within half a pixel of it has a disparity larger by more than ``tolerance`` (a z-buffer
    over forward-projected disparities).
    """
    d = np.asarray(disparity, dtype=np.float64)
    h, w = d.shape
    target = np.arange(w)[None, :] - d
    hidden = (target < -0.5) | (target > w - 0.5) | ~np.isfinite(d)
    dd = np.where(np.isfinite(d), d, -np.inf)
    zmax = np.full((h, w + 2), -np.inf)
    rows = np.broadcast_to(np.arange(h)[:, None], (h, w))
    # splat each pixel into the two nearest right-view columns (covers gaps of up to 1 px)
    for cols in (np.floor(target), np.ceil(target)):
        c = np.clip(cols, -1, w).astype(np.int64) + 1
        np.maximum.at(zmax, (rows, c), dd)
    near = np.clip(np.rint(target), -1, w).astype(np.int64) + 1
    hidden |= zmax[rows, near] > dd + tolerance
    return hidden
