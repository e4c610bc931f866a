"""The demo: x4 stereo super-resolution of the Middlebury "Motorcycle" pair.

The pair ships inside scikit-image (``skimage/data/motorcycle_{left,right}.png``). It is the
project's test pair: no model of the project was trained or tuned on it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["DemoResult", "demo_figure", "motorcycle_paths", "run_demo"]


def motorcycle_paths() -> tuple[Path, Path]:
    """Paths of the Motorcycle views inside the installed scikit-image package."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the demo pair comes with scikit-image: pip install scikit-image "
                         "(or pip install 'stereosr[demo]')")
    root = Path(next(iter(spec.submodule_search_locations))) / "data"
    left, right = root / "motorcycle_left.png", root / "motorcycle_right.png"
    if not left.exists() or not right.exists():
        raise InputError(f"{root}: the Motorcycle pair is missing from this scikit-image install")
    return left, right


@dataclass
class DemoResult:
    """Images (uint8 (H, W, 3)) and scores of a demo run."""

    hr: tuple[np.ndarray, np.ndarray]
    lr: tuple[np.ndarray, np.ndarray]
    bicubic: tuple[np.ndarray, np.ndarray]
    sr: tuple[np.ndarray, np.ndarray]
    evaluation: Any  # stereosr.evaluate.EvaluationResult

    def scores(self) -> dict[str, dict[str, dict[str, float]]]:
        return self.evaluation.mean()  # type: ignore[no-any-return]


def run_demo(model: Any, scale: int = 4, **upscale_kwargs: Any) -> DemoResult:
    """Make the MATLAB-bicubic LR pair, upscale it with ``model`` and with bicubic, score both."""
    from .evaluate import EvalPair, evaluate_model, make_lr
    from .figures import to_uint8
    from .imageops import as_rgb8, modcrop
    from .io import read_image

    if int(model.scale) != scale:
        raise InputError(f"the demo runs x{scale}; this model upscales x{int(model.scale)}")
    lp, rp = motorcycle_paths()
    hr_l = modcrop(as_rgb8(read_image(lp)), scale)
    hr_r = modcrop(as_rgb8(read_image(rp)), scale)
    pair = EvalPair("motorcycle", hr_l, hr_r, make_lr(hr_l, scale), make_lr(hr_r, scale), scale)
    seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def keep(_: EvalPair, outputs: Any) -> None:
        seen.update(outputs)

    result = evaluate_model(model, [pair], upscale_kwargs=upscale_kwargs, on_output=keep)
    bic = (to_uint8(seen["bicubic"][0]), to_uint8(seen["bicubic"][1]))
    sr = (to_uint8(seen["model"][0]), to_uint8(seen["model"][1]))
    return DemoResult((hr_l, hr_r), (pair.lr_left, pair.lr_right), bic, sr, result)


def demo_figure(res: DemoResult, crop: tuple[int, int] = (120, 200), zoom: int = 2) -> Any:
    """Comparison figure: for each view, the same detailed crop of bicubic, SR and HR."""
    from .figures import FigureRow, comparison_figure, crop_box, detail_box

    rows = []
    per_pair = res.evaluation.pairs[0].scores
    for i, view in enumerate(("left", "right")):
        box = detail_box(res.hr[i], crop)
        b = per_pair["bicubic"]["stereo"]
        m = per_pair["model"]["stereo"]
        title = (f"{view} view, x4 - pair (L+R)/2: bicubic {b['psnr']:.2f} dB / "
                 f"{b['ssim']:.4f}, stereosr {m['psnr']:.2f} dB / {m['ssim']:.4f}")
        rows.append(FigureRow(title, [("MATLAB bicubic", crop_box(res.bicubic[i], box)),
                                      ("stereosr (NAFSSR)", crop_box(res.sr[i], box)),
                                      ("HR (ground truth)", crop_box(res.hr[i], box))]))
    return comparison_figure(rows, zoom=zoom)
