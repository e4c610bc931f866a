"""Scoring stereo SR results: a folder of results against HR, or a model (with the bicubic
baseline) run on a data set.

Library entry points:

- :func:`evaluate_pairs`: score SR pairs you already have (arrays or tensors) against HR.
- :func:`evaluate_model`: run a model (and/or MATLAB bicubic) on :class:`EvalPair` s and score.
- :func:`evaluate_folders`: match an SR folder to an HR folder by pair name and score.
- :func:`load_eval_pair`: HR (and LR) views of a data set pair, LR made with MATLAB bicubic
  when the layout has none.

All return an :class:`EvaluationResult` (per-pair and mean scores per method and protocol,
JSON/CSV/table output). ``metrics`` chooses the scores (``psnr``, ``ssim``, ``lpips`` with an
``lpips=`` module, ``consistency`` where the HR pairs have disparity maps; see
:func:`stereosr.metrics.score_pair`). Conventions: see :mod:`stereosr.metrics` and
docs/metrics.md.

How LR and the bicubic baseline are made (the field's recipe): the HR views are cropped to a
multiple of the scale ("modcrop", bottom/right rows and columns dropped), LR = MATLAB
``imresize(HR, 1/s, 'bicubic')`` on the 8-bit HR, rounded to 8 bits as a saved PNG would be;
the baseline = MATLAB ``imresize(LR, s, 'bicubic')`` computed in floating point and rounded to
8 bits once, when scored.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .imageops import as_rgb8, modcrop
from .metrics import LEFT, STEREO, Protocol, parse_metrics, score_pair
from .metrics._image import Image

__all__ = [
    "DEFAULT_METRICS",
    "DEFAULT_PROTOCOLS",
    "EvalPair",
    "EvaluationResult",
    "PairScores",
    "bicubic_upscale",
    "evaluate_folders",
    "evaluate_model",
    "evaluate_pairs",
    "iter_eval_pairs",
    "load_eval_pair",
    "make_lr",
    "read_pair_disparity",
    "score_outputs",
]

DEFAULT_PROTOCOLS: tuple[Protocol, ...] = (STEREO, LEFT)
DEFAULT_METRICS: tuple[str, ...] = ("psnr", "ssim")

#: ``on_output(pair, outputs)`` hook of :func:`evaluate_model`: the SR views of each method
OutputHook = Callable[["EvalPair", Mapping[str, tuple[np.ndarray, np.ndarray]]], None]


def make_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-bicubic LR of an (H, W, C) uint8 HR view whose H and W are multiples of ``scale``.

    Returns (H/scale, W/scale, C) uint8 (rounded like a saved PNG).
    """
    from .degrade.bicubic import imresize

    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise InputError(f"HR view of {w}x{h} is not a multiple of the scale {scale}; modcrop "
                         "it first")
    return imresize(hr, 1.0 / scale)


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-bicubic ``scale``-times upscaling of a uint8 view, as float64 on the [0, 1] scale.

    Computed in floating point without intermediate rounding; the cubic overshoot is not
    clipped (the metrics round and clip once, like saving the result as a PNG).
    """
    from .degrade.bicubic import imresize

    return imresize(lr.astype(np.float64) / 255.0, float(scale))


@dataclass(frozen=True)
class EvalPair:
    """One data set pair ready for evaluation: (H, W, 3) uint8 HR views (modcropped), their
    (H/scale, W/scale, 3) uint8 LR views and, where the layout has one, the (H, W) float HR
    left-view disparity in pixels (unknown = ``inf``)."""

    name: str
    hr_left: np.ndarray
    hr_right: np.ndarray
    lr_left: np.ndarray
    lr_right: np.ndarray
    scale: int
    lr_from_disk: bool = False
    disparity: np.ndarray | None = None


def read_pair_disparity(pair: Any, shape: tuple[int, int]) -> np.ndarray:
    """The HR left-view disparity of a :class:`stereosr.data.pairs.PairFiles`, cropped to the
    (H, W) of its modcropped HR views; :class:`InputError` when the pair has none."""
    from .data.pairs import read_disparity

    if getattr(pair, "disparity", None) is None:
        raise InputError(f"pair {pair.name}: no disparity map, which metric 'consistency' needs "
                         "(layouts with one: KITTI disp_occ_0/, Flickr1024-style disparity/, "
                         "Middlebury disp0.pfm)")
    d = read_disparity(pair.disparity)
    h, w = shape
    if d.shape[0] < h or d.shape[1] < w:
        raise InputError(f"pair {pair.name}: disparity map {pair.disparity} is {d.shape[1]}x"
                         f"{d.shape[0]}, smaller than the HR views ({w}x{h})")
    return d[:h, :w]


def load_eval_pair(pair: Any, scale: int, *, disparity: bool = False) -> EvalPair:
    """Read a :class:`stereosr.data.pairs.PairFiles` as an :class:`EvalPair`.

    LR views are read when the layout has them (their size must be the HR size divided by
    ``scale``, up to the HR's modcrop remainder); otherwise they are made from the HR views
    with :func:`make_lr`. ``disparity``: also read the left-view disparity map (required).
    """
    from dataclasses import replace

    ep = _load_eval_pair(pair, scale)
    if disparity:
        ep = replace(ep, disparity=read_pair_disparity(pair, ep.hr_left.shape[:2]))
    return ep


def _load_eval_pair(pair: Any, scale: int) -> EvalPair:
    from .data.pairs import check_lr_size
    from .io import read_image

    if not isinstance(scale, int) or scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale!r}")
    hr_l = as_rgb8(read_image(pair.left), str(pair.left))
    hr_r = as_rgb8(read_image(pair.right), str(pair.right))
    if hr_l.shape != hr_r.shape:
        raise InputError(f"pair {pair.name}: HR views differ in size ({hr_l.shape[1]}x"
                         f"{hr_l.shape[0]} vs {hr_r.shape[1]}x{hr_r.shape[0]})")
    full_h, full_w = hr_l.shape[:2]
    hr_l, hr_r = modcrop(hr_l, scale), modcrop(hr_r, scale)
    if pair.lr_left is not None and pair.lr_right is not None:
        lr_l = as_rgb8(read_image(pair.lr_left), str(pair.lr_left))
        lr_r = as_rgb8(read_image(pair.lr_right), str(pair.lr_right))
        check_lr_size(pair.name, pair.lr_left, lr_l.shape[:2], (full_h, full_w), scale)
        check_lr_size(pair.name, pair.lr_right, lr_r.shape[:2], (full_h, full_w), scale)
        return EvalPair(pair.name, hr_l, hr_r, lr_l, lr_r, scale, lr_from_disk=True)
    return EvalPair(pair.name, hr_l, hr_r, make_lr(hr_l, scale), make_lr(hr_r, scale), scale)


def iter_eval_pairs(pairs: Iterable[Any], scale: int, *, disparity: bool = False,
                    skipped: list[tuple[str, str]] | None = None) -> Iterator[EvalPair]:
    """:func:`load_eval_pair` over ``pairs`` (``disparity`` as there).

    With a ``skipped`` list, a pair that cannot be read or does not fit (views of other sizes,
    LR not HR / ``scale``, a missing disparity map) is left out with a
    :class:`~stereosr.data.pairs.BadPairWarning` and recorded there as ``(name, reason)``;
    without one, the first bad pair raises :class:`InputError`."""
    for pair in pairs:
        try:
            item = load_eval_pair(pair, scale, disparity=disparity)
        except InputError as exc:
            if skipped is None:
                raise
            _skip(skipped, pair.name, exc)
            continue
        yield item


def _skip(skipped: list[tuple[str, str]], name: str, exc: Exception) -> None:
    import warnings

    from .data.pairs import BadPairWarning

    reason = str(exc)
    warnings.warn(f"skipping pair {name!r}: {reason}", BadPairWarning, stacklevel=3)
    skipped.append((name, reason))


@dataclass
class PairScores:
    """Scores of one pair: ``scores[method][protocol][metric]`` (psnr in dB, ssim, lpips...)."""

    name: str
    scores: dict[str, dict[str, dict[str, float]]]


#: Score columns in report order, with table labels and formats.
_LABELS: dict[str, tuple[str, str]] = {
    "psnr": ("PSNR dB", "{:.2f}"), "ssim": ("SSIM", "{:.4f}"), "lpips": ("LPIPS", "{:.4f}"),
    "lpips_left": ("LPIPS left", "{:.4f}"), "lpips_right": ("LPIPS right", "{:.4f}"),
    "consistency": ("warp excess", "{:.3f}"), "warp_error_sr": ("warp err SR", "{:.3f}"),
    "warp_error_hr": ("warp err HR", "{:.3f}"),
}
_COLUMNS = list(_LABELS)
#: Scores where lower is better: their table ``gain`` is bicubic minus model.
_LOWER_IS_BETTER = frozenset({"lpips", "lpips_left", "lpips_right", "consistency",
                              "warp_error_sr", "warp_error_hr"})


def _json_number(v: float) -> float | str:
    return v if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "nan")


@dataclass
class EvaluationResult:
    """Per-pair scores and their means, per method and protocol."""

    methods: tuple[str, ...]
    protocols: tuple[Protocol, ...]
    pairs: list[PairScores] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    #: pairs left out as bad (``skip_bad``): ``(name, reason)``
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def mean(self) -> dict[str, dict[str, dict[str, float]]]:
        """``mean[method][protocol][metric]`` over all pairs (PSNR ``inf`` stays ``inf``)."""
        if not self.pairs:
            raise InputError("no pairs were evaluated")
        out: dict[str, dict[str, dict[str, float]]] = {}
        n = len(self.pairs)
        for m in self.methods:
            out[m] = {}
            for p in self.protocols:
                keys = self.pairs[0].scores[m][p.name]
                out[m][p.name] = {k: sum(ps.scores[m][p.name][k] for ps in self.pairs) / n
                                  for k in keys}
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: protocol definitions, means, per-pair scores, metadata.

        Non-finite values (PSNR of identical images) are written as the strings ``"inf"``.
        """
        def clean(d: Mapping[str, Any]) -> dict[str, Any]:
            return {k: clean(v) if isinstance(v, Mapping) else _json_number(v)
                    for k, v in d.items()}

        return {
            "methods": list(self.methods),
            "protocols": {p.name: {"views": p.views, "crop_left": p.crop_left,
                                   "crop_border": p.crop_border, "y_channel": p.y_channel,
                                   "ssim_window": p.ssim_window} for p in self.protocols},
            "num_pairs": len(self.pairs),
            "mean": clean(self.mean()),
            "pairs": [{"name": ps.name, "scores": clean(ps.scores)} for ps in self.pairs],
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
            "meta": dict(self.meta),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def metric_keys(self) -> list[str]:
        """Every score name present, in the order of :data:`_COLUMNS` (others after)."""
        seen: dict[str, None] = {}
        for ps in self.pairs:
            for by_proto in ps.scores.values():
                for scores in by_proto.values():
                    seen.update(dict.fromkeys(scores))
        return sorted(seen, key=lambda k: (_COLUMNS.index(k) if k in _COLUMNS
                                           else len(_COLUMNS), k))

    def to_csv(self) -> str:
        """CSV text: one row per pair, method and protocol, then the means (pair = ``mean``);
        one column per score (empty where a protocol has no such score, e.g. ``lpips_right``
        of the left-view protocol)."""
        buf = io.StringIO()
        wr = csv.writer(buf, lineterminator="\n")
        keys = self.metric_keys()
        wr.writerow(["pair", "method", "protocol", *keys])
        rows = [(ps.name, ps.scores) for ps in self.pairs] + [("mean", self.mean())]
        for name, scores in rows:
            for m in self.methods:
                for p in self.protocols:
                    s = scores[m][p.name]
                    wr.writerow([name, m, p.name,
                                 *(f"{s[k]:.6f}" if k in s else "" for k in keys)])
        return buf.getvalue()

    def format_table(self, per_pair: bool = False) -> str:
        """Plain-text table of the means (and of each pair with ``per_pair``); a ``gain``
        column when a model is compared with bicubic, positive where the model is better
        (higher PSNR/SSIM, lower LPIPS and warp errors)."""
        mean = self.mean()
        gain = "model" in self.methods and "bicubic" in self.methods
        head = ["protocol", "metric", *self.methods] + (["gain"] if gain else [])
        lines = []

        def block(title: str, scores: Mapping[str, Mapping[str, Mapping[str, float]]]) -> None:
            rows = [head]
            for p in self.protocols:
                for metric in self.metric_keys():
                    if metric not in scores[self.methods[0]][p.name]:
                        continue
                    label, fmt = _LABELS.get(metric, (metric, "{:.4f}"))
                    vals = [scores[m][p.name][metric] for m in self.methods]
                    row = [p.name, label, *(fmt.format(v) for v in vals)]
                    if gain:
                        d = scores["model"][p.name][metric] - scores["bicubic"][p.name][metric]
                        d = -d if metric in _LOWER_IS_BETTER else d
                        row.append(("+" if d >= 0 else "") + fmt.format(d))
                    rows.append(row)
            widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
            lines.append(title)
            for r in rows:
                lines.append("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i])
                                       for i, c in enumerate(r)).rstrip())

        if per_pair:
            for ps in self.pairs:
                block(f"pair {ps.name}", ps.scores)
                lines.append("")
        block(f"mean over {len(self.pairs)} pair{'s' if len(self.pairs) != 1 else ''}", mean)
        if self.skipped:
            names = ", ".join(n for n, _ in self.skipped[:5])
            more = " ..." if len(self.skipped) > 5 else ""
            lines.append(f"skipped {len(self.skipped)} bad pair(s): {names}{more}")
        return "\n".join(lines) + "\n"


def _with_pair(name: str, exc: InputError) -> InputError:
    return InputError(f"pair {name}: {exc}")


def score_outputs(name: str, hr_left: Image, hr_right: Image,
                  outputs: Mapping[str, tuple[Image, Image]],
                  protocols: Sequence[Protocol] = DEFAULT_PROTOCOLS, *,
                  metrics: str | Sequence[str] = DEFAULT_METRICS, lpips: Any = None,
                  disparity: np.ndarray | None = None) -> PairScores:
    """Score the SR views of several methods (``{method: (sr_left, sr_right)}``) of one pair.

    ``metrics``, ``lpips``, ``disparity``: see :func:`stereosr.metrics.score_pair`.
    """
    scores = {}
    for method, (sr_l, sr_r) in outputs.items():
        try:
            scores[method] = score_pair(sr_l, sr_r, hr_left, hr_right, protocols,
                                        metrics=metrics, lpips=lpips, disparity=disparity)
        except InputError as exc:
            raise _with_pair(name, exc) from None
    return PairScores(name, scores)


def _progress(items: Iterable[Any], total: int | None, desc: str, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return items
    import sys

    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit="pair", disable=None, file=sys.stderr)


def evaluate_pairs(pairs: Iterable[tuple[Any, ...]],
                   protocols: Sequence[Protocol] = DEFAULT_PROTOCOLS, *, method: str = "sr",
                   metrics: str | Sequence[str] = DEFAULT_METRICS, lpips: Any = None,
                   progress: bool = False, total: int | None = None) -> EvaluationResult:
    """Score SR pairs against HR pairs.

    ``pairs``: ``(name, sr_left, sr_right, hr_left, hr_right)`` tuples, with the (H, W) HR
    left-view disparity as a sixth item for ``metrics`` with ``"consistency"``; views are
    (H, W[, C]) arrays or (C, H, W) tensors, uint8/uint16 or float in [0, 1] (quantised to 8
    bits), each SR view the size of its HR view. ``metrics``, ``lpips``: see
    :func:`stereosr.metrics.score_pair`. Returns an :class:`EvaluationResult` with one method.
    """
    chosen = parse_metrics(metrics)
    result = EvaluationResult((method,), tuple(protocols), meta={"metrics": list(chosen)})
    for item in _progress(pairs, total, "evaluate", progress):
        name, sr_l, sr_r, hr_l, hr_r = item[:5]
        disparity = item[5] if len(item) > 5 else None
        result.pairs.append(score_outputs(name, hr_l, hr_r, {method: (sr_l, sr_r)}, protocols,
                                          metrics=chosen, lpips=lpips, disparity=disparity))
    if not result.pairs:
        raise InputError("no pairs to evaluate")
    return result


def evaluate_model(model: Any, pairs: Iterable[EvalPair],
                   protocols: Sequence[Protocol] = DEFAULT_PROTOCOLS, *, bicubic: bool = True,
                   upscale_kwargs: Mapping[str, Any] | None = None,
                   on_output: OutputHook | None = None, progress: bool = False,
                   total: int | None = None, metrics: str | Sequence[str] = DEFAULT_METRICS,
                   lpips: Any = None) -> EvaluationResult:
    """Run ``model`` (method ``"model"``) and MATLAB bicubic (method ``"bicubic"``) on each
    pair's LR views and score both against HR.

    ``model``: a loaded model (``model(left, right)`` with a ``scale``; see
    :func:`stereosr.models.checkpoint.load_model`) or ``None`` for the bicubic baseline only.
    ``upscale_kwargs`` go to :func:`stereosr.infer.upscale` (``tile``, ``self_ensemble``...).
    ``on_output(pair, {method: (sr_left, sr_right)})`` sees the (H, W, 3) outputs (uint8 for
    the model, float for bicubic), e.g. to build a figure. ``metrics``, ``lpips``: see
    :func:`stereosr.metrics.score_pair` (``consistency`` uses each pair's ``disparity``; load
    the pairs with ``load_eval_pair(..., disparity=True)``).
    """
    methods = (("model",) if model is not None else ()) + (("bicubic",) if bicubic else ())
    if not methods:
        raise InputError("nothing to evaluate: give a model or keep the bicubic baseline")
    chosen = parse_metrics(metrics)
    result = EvaluationResult(methods, tuple(protocols), meta={"metrics": list(chosen)})
    from_disk = 0
    for pair in _progress(pairs, total, "evaluate", progress):
        from_disk += int(pair.lr_from_disk)
        outputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if model is not None:
            from .infer.upscale import upscale

            if int(model.scale) != pair.scale:
                raise InputError(f"the model upscales x{int(model.scale)} but the data are "
                                 f"prepared for x{pair.scale}; pass scale={int(model.scale)} "
                                 f"or use a x{pair.scale} model")
            outputs["model"] = upscale(pair.lr_left, pair.lr_right, model,
                                       **dict(upscale_kwargs or {}))
        if bicubic:
            outputs["bicubic"] = (bicubic_upscale(pair.lr_left, pair.scale),
                                  bicubic_upscale(pair.lr_right, pair.scale))
        result.pairs.append(score_outputs(pair.name, pair.hr_left, pair.hr_right, outputs,
                                          protocols, metrics=chosen, lpips=lpips,
                                          disparity=pair.disparity))
        if on_output is not None:
            on_output(pair, outputs)
    if not result.pairs:
        raise InputError("no pairs to evaluate")
    n = len(result.pairs)
    result.meta["lr"] = ("read from disk" if from_disk == n else "MATLAB bicubic of HR"
                         if from_disk == 0 else f"{from_disk} of {n} pairs read from disk")
    return result


def _match_folders(sr_dir: Path, hr_dir: Path, layout_sr: str, layout_hr: str,
                   skip_bad: bool) -> tuple[list[tuple[Any, Any]], list[tuple[str, str]]]:
    """(matched (SR, HR) pairs, skipped (name, reason)); SR pairs are found by HR pair name."""
    from .data.pairs import find_pairs

    on_error = "skip" if skip_bad else "raise"
    hr_pairs = find_pairs(hr_dir, layout=layout_hr, on_error=on_error)
    found_sr = find_pairs(sr_dir, layout=layout_sr, on_error=on_error)
    sr_pairs = {p.name: p for p in found_sr}
    bad_sr = dict(found_sr.skipped)
    skipped = list(hr_pairs.skipped)
    matched = []
    missing = []
    for p in hr_pairs:
        if p.name in sr_pairs:
            matched.append((sr_pairs[p.name], p))
        elif p.name in bad_sr:
            skipped.append((p.name, f"SR pair: {bad_sr[p.name]}"))
        else:
            missing.append(p.name)
    if missing and skip_bad and matched:
        # A pair the upscaling run skipped as bad has no result: left out like a bad pair.
        import warnings

        from .data.pairs import BadPairWarning

        for name in missing:
            reason = f"{sr_dir}: no SR result for this pair"
            warnings.warn(f"skipping pair {name!r}: {reason}", BadPairWarning, stacklevel=3)
            skipped.append((name, reason))
    elif missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise InputError(f"{sr_dir}: no SR result for HR pair {missing[0]!r}{more}; SR pairs are "
                         f"matched to HR pairs by name ({len(sr_pairs)} SR vs {len(hr_pairs)} HR "
                         "pairs found)" + ("" if skip_bad else "; to score the others, leave "
                                           "out pairs without a result with skip_bad=True"))
    return matched, skipped


def _fit_hr_to_sr(name: str, sr: np.ndarray, hr_l: np.ndarray, hr_r: np.ndarray,
                  scale: int | None) -> tuple[np.ndarray, np.ndarray] | None:
    """HR views cropped at the bottom/right to the SR size when the SR views are the HR views
    modcropped (HR size rounded down to a multiple of ``scale``, or with ``scale=None`` of one
    of the usual scales 2, 3, 4, 8: the crop is the same), as an SR model's output of LR views
    made from HR that was not a multiple of the scale is; ``None`` when the sizes agree.

    Raises:
        InputError: the sizes differ in any other way.
    """
    (h, w), (hh, hw) = sr.shape[:2], hr_l.shape[:2]
    if (h, w) == (hh, hw):
        return None
    scales = [scale] if scale else [2, 3, 4, 8]
    if any(hh - hh % s == h and hw - hw % s == w for s in scales):
        return hr_l[:h, :w], hr_r[:h, :w]
    which = f"x{scale}" if scale else "x2, x3, x4 or x8; give another with scale=N"
    raise InputError(f"pair {name}: SR views are {w}x{h} but HR views {hw}x{hh}; an SR result "
                     f"must have the HR size, or the HR size cropped to a multiple of the scale "
                     f"({which})")


def evaluate_folders(sr_dir: str | os.PathLike[str], hr_dir: str | os.PathLike[str],
                     protocols: Sequence[Protocol] = DEFAULT_PROTOCOLS, *,
                     layout_sr: str = "auto", layout_hr: str = "auto", skip_bad: bool = False,
                     progress: bool = False,
                     on_pair: Callable[[str, tuple[np.ndarray, ...]], None] | None = None,
                     metrics: str | Sequence[str] = DEFAULT_METRICS, lpips: Any = None,
                     scale: int | None = None) -> EvaluationResult:
    """Score the pairs of ``sr_dir`` against the pairs of ``hr_dir`` with the same names.

    Both folders are read with :func:`stereosr.data.pairs.find_pairs` (any supported layout);
    every HR pair needs an SR pair (extra SR pairs are ignored). Images are scored as 8-bit
    RGB (:func:`as_rgb8`). ``on_pair(name, (sr_l, sr_r, hr_l, hr_r))`` sees each pair read.
    ``metrics``, ``lpips``: see :func:`stereosr.metrics.score_pair`; ``consistency`` reads each
    HR pair's disparity map (the HR layout must have them).

    HR views that are not a multiple of the scale are cropped at the bottom/right to their SR
    result's size when that is the HR size rounded down to a multiple of ``scale`` (with
    ``scale=None``: of 2, 3, 4 or 8), as ``evaluate_model`` modcrops them: an SR folder made by
    upscaling ``degrade``'s LR views scores against the original HR folder. The number of such
    pairs is ``result.meta["hr_modcropped"]``.

    ``skip_bad``: pairs that cannot be read, whose SR pair was bad or missing, or whose SR and
    HR views differ in size are left out with a warning and listed in ``result.skipped``;
    without it, the first one raises :class:`InputError`. No pair left to score raises as well.
    """
    from .data.pairs import natural_key
    from .io import read_image

    chosen = parse_metrics(metrics)
    with_disp = "consistency" in chosen
    matched, skipped = _match_folders(Path(sr_dir), Path(hr_dir), layout_sr, layout_hr,
                                      skip_bad)
    result = EvaluationResult(("sr",), tuple(protocols), meta={"metrics": list(chosen)},
                              skipped=skipped)
    cropped = 0
    for sr, hr in _progress(matched, len(matched), "evaluate", progress):
        try:
            views = tuple(as_rgb8(read_image(p), str(p))
                          for p in (sr.left, sr.right, hr.left, hr.right))
            fitted = _fit_hr_to_sr(hr.name, views[0], views[2], views[3], scale)
            if fitted is not None:
                views = (views[0], views[1], *fitted)
                cropped += 1
            disp = read_pair_disparity(hr, views[2].shape[:2]) if with_disp else None
            scores = score_outputs(hr.name, views[2], views[3], {"sr": (views[0], views[1])},
                                   protocols, metrics=chosen, lpips=lpips, disparity=disp)
        except InputError as exc:
            if not skip_bad:
                raise
            _skip(result.skipped, hr.name, exc)
            continue
        if on_pair is not None:
            on_pair(hr.name, views)
        result.pairs.append(scores)
    result.skipped.sort(key=lambda item: natural_key(item[0]))
    if not result.pairs:
        why = f" ({len(result.skipped)} bad pair(s) skipped)" if result.skipped else ""
        raise InputError(f"no pairs to evaluate{why}")
    result.meta.update(sr=str(sr_dir), hr=str(hr_dir))
    if cropped:
        result.meta["hr_modcropped"] = cropped
    return result
