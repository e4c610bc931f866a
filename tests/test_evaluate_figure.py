"""Comparison figures: crop choice and panel placement."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from stereosr.errors import InputError
from stereosr.figures import FigureRow, comparison_figure, crop_box, detail_box, png_bytes


def test_detail_box_finds_the_textured_window() -> None:
    img = np.full((120, 200, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    img[60:100, 130:170] = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    y, x, h, w = detail_box(img, 40)
    assert (h, w) == (40, 40)
    assert abs(y - 60) <= 10 and abs(x - 130) <= 10
    assert crop_box(img, (y, x, h, w)).shape == (40, 40, 3)
    assert detail_box(img, (500, 30))[2:] == (120, 30)  # clipped to the image


def test_figure_places_zoomed_panels() -> None:
    a = np.zeros((10, 12, 3), np.uint8)
    a[..., 0] = 200
    b = np.full((10, 12, 3), 0.5)
    fig = comparison_figure([FigureRow("pair one", [("A", a), ("B", b)]),
                             FigureRow("pair two", [("A", a), ("B", b)])],
                            zoom=3, font_size=10, gap=4, margin=5)
    line = 16
    assert fig.size == (5 * 2 + 2 * 36 + 4, 5 * 2 + 2 * (line + 30 + line) + 4)
    arr = np.asarray(fig)
    top = 5 + line
    np.testing.assert_array_equal(arr[top:top + 30, 5:5 + 36], np.broadcast_to([200, 0, 0],
                                                                            (30, 36, 3)))
    np.testing.assert_array_equal(arr[top:top + 30, 45:45 + 36], np.full((30, 36, 3), 128))
    assert (arr[5:top] < 128).any()  # the title text is drawn
    back = Image.open(io.BytesIO(png_bytes(fig)))
    assert back.size == fig.size


def test_figure_bad_input() -> None:
    with pytest.raises(InputError):
        comparison_figure([])
    with pytest.raises(InputError):
        comparison_figure([FigureRow("x", [("a", np.zeros((4, 4, 3), np.int32))])])


def test_panel_labels_wrap_instead_of_losing_scores() -> None:
    """Under a narrow panel the label's scores go onto more lines (broken after " / "), each
    within the panel's width, and none is cut off."""
    from PIL import Image, ImageDraw

    from stereosr.figures import _font, wrap_label

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = _font(14)
    label = "Bicubic 25.01 dB / 0.8885 / LPIPS 0.0074"
    for width in (120, 180, 260, 1000):
        lines = wrap_label(draw, label, font, width)
        assert all(draw.textlength(ln, font=font) <= width for ln in lines)
        assert " ".join(lines) == label  # every score is there, in order
        assert (len(lines) == 1) == (draw.textlength(label, font=font) <= width)
    fig = comparison_figure([FigureRow("p", [(label, np.zeros((30, 64, 3), np.uint8))])],
                            zoom=2)
    one_line = comparison_figure([FigureRow("p", [("HR", np.zeros((30, 64, 3), np.uint8))])],
                                 zoom=2)
    assert fig.height > one_line.height  # room was made for the extra lines
