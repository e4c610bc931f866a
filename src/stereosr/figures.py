"""Side-by-side comparison figures (bicubic | SR | HR crops) drawn with Pillow.

A figure is a grid: one row per pair, one labelled panel per method, each panel the same crop
of that method's output, enlarged with nearest-neighbour zoom so that pixels stay visible.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import InputError

__all__ = ["FigureRow", "comparison_figure", "crop_box", "detail_box", "png_bytes", "to_uint8",
           "wrap_label"]

Box = tuple[int, int, int, int]  # top, left, height, width


def to_uint8(img: np.ndarray) -> np.ndarray:
    """uint8 as is; float in [0, 1] rounded and clipped to uint8 (like saving a PNG)."""
    if img.dtype == np.uint8:
        return img
    if np.issubdtype(img.dtype, np.floating):
        return np.clip(np.round(img.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    raise InputError(f"figure panels must be uint8 or float images, got dtype {img.dtype}")


def detail_box(img: np.ndarray, size: int | tuple[int, int]) -> Box:
    """The ``size`` window of an (H, W[, C]) image with the most detail (mean absolute
    gradient of the grey image), searched on a grid of quarter-window steps. Deterministic."""
    h, w = img.shape[:2]
    ch, cw = (size, size) if isinstance(size, int) else size
    ch, cw = min(ch, h), min(cw, w)
    g = img.astype(np.float64)
    if g.ndim == 3:
        g = g.mean(axis=2)
    energy = np.zeros((h, w))
    energy[:, 1:] += np.abs(np.diff(g, axis=1))
    energy[1:, :] += np.abs(np.diff(g, axis=0))
    integral = np.zeros((h + 1, w + 1))
    integral[1:, 1:] = energy.cumsum(0).cumsum(1)
    step_y, step_x = max(1, ch // 4), max(1, cw // 4)
    ys = list(range(0, h - ch + 1, step_y))
    xs = list(range(0, w - cw + 1, step_x))
    if ys[-1] != h - ch:
        ys.append(h - ch)
    if xs[-1] != w - cw:
        xs.append(w - cw)
    best, best_box = -1.0, (0, 0, ch, cw)
    for y in ys:
        for x in xs:
            s = (integral[y + ch, x + cw] - integral[y, x + cw] - integral[y + ch, x]
                 + integral[y, x])
            if s > best:
                best, best_box = s, (y, x, ch, cw)
    return best_box


def crop_box(img: np.ndarray, box: Box) -> np.ndarray:
    """The ``(top, left, height, width)`` crop of an (H, W[, C]) image."""
    y, x, h, w = box
    return img[y:y + h, x:x + w]


@dataclass(frozen=True)
class FigureRow:
    """One figure row: a title and labelled (H, W, 3) uint8/float panels of one size."""

    title: str
    panels: Sequence[tuple[str, np.ndarray]]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: object, width: int) -> str:
    if draw.textlength(text, font=font) <= width:  # type: ignore[arg-type]
        return text
    while text and draw.textlength(text + "...", font=font) > width:  # type: ignore[arg-type]
        text = text[:-1]
    return text + "..."


def wrap_label(draw: ImageDraw.ImageDraw, text: str, font: object, width: int) -> list[str]:
    """``text`` as lines of at most ``width`` pixels, broken after its " / " separators (the
    scores of a panel label), so that no score is cut off under a narrow panel; a part wider
    than ``width`` on its own is shortened with "..."."""
    parts = text.split(" / ")
    lines: list[str] = []
    for i, part in enumerate(parts):
        piece = part + (" /" if i < len(parts) - 1 else "")
        joined = f"{lines[-1]} {piece}" if lines else piece
        if lines and draw.textlength(joined, font=font) <= width:  # type: ignore[arg-type]
            lines[-1] = joined
        else:
            lines.append(piece)
    return [_fit(draw, ln, font, width) for ln in lines]


def comparison_figure(rows: Sequence[FigureRow], *, zoom: int = 2, font_size: int = 14,
                      gap: int = 6, margin: int = 10) -> Image.Image:
    """Draw ``rows`` as an RGB image: per row a title line, then the panels side by side,
    each ``zoom`` times enlarged (nearest neighbour) with its label underneath."""
    if not rows or any(not r.panels for r in rows):
        raise InputError("a comparison figure needs at least one row with panels")
    if zoom < 1:
        raise InputError(f"zoom must be >= 1, got {zoom}")
    font = _font(font_size)
    line = font_size + 6
    tiles: list[list[tuple[str, Image.Image]]] = []
    for r in rows:
        row_tiles = []
        for label, arr in r.panels:
            a = to_uint8(np.asarray(arr))
            if a.ndim == 2:
                a = np.repeat(a[..., None], 3, axis=2)
            tile = Image.fromarray(np.ascontiguousarray(a[..., :3]))
            if zoom > 1:
                tile = tile.resize((tile.width * zoom, tile.height * zoom),
                                   Image.Resampling.NEAREST)
            row_tiles.append((label, tile))
        tiles.append(row_tiles)
    width = max(sum(t.width for _, t in rt) + gap * (len(rt) - 1) for rt in tiles) + 2 * margin
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = [[wrap_label(measure, label, font, t.width) for label, t in rt] for rt in tiles]
    heights = [line + max(t.height for _, t in rt) + line * max(len(lb) for lb in lbs)
               for rt, lbs in zip(tiles, labels)]
    canvas = Image.new("RGB", (width, sum(heights) + gap * (len(rows) - 1) + 2 * margin),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    y = margin
    for r, rt, lbs, rh in zip(rows, tiles, labels, heights):
        draw.text((margin, y + 2), _fit(draw, r.title, font, width - 2 * margin), fill=(0, 0, 0),
                  font=font)
        x = margin
        for (_, tile), label_lines in zip(rt, lbs):
            canvas.paste(tile, (x, y + line))
            for k, text in enumerate(label_lines):
                draw.text((x, y + line + tile.height + 3 + k * line), text, fill=(0, 0, 0),
                          font=font)
            x += tile.width + gap
        y += rh + gap
    return canvas


def png_bytes(img: Image.Image) -> bytes:
    """PNG encoding of a Pillow image."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
