"""``stereosr evaluate``: PSNR/SSIM/LPIPS/stereo consistency of SR results, or of a model and
bicubic on a data set."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ._common import add_device_arg, add_precision_arg, check_output_file, commit_files

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate", help="score SR results (PSNR/SSIM/LPIPS) against HR, or run a model on a "
                         "data set",
        description="Score existing results (--sr SR_DIR --hr HR_DIR, pairs matched by name), "
                    "or upscale a data set's LR views with a model and with MATLAB bicubic "
                    "(--data DIR [--weights W]) and score both. Default protocols: 'stereo' "
                    "((L+R)/2, RGB, 8-bit, no crop, 7x7 SSIM) and 'left' (left view, 64 "
                    "leftmost columns cropped).")
    p.add_argument("--sr", type=Path, default=None, metavar="SR_DIR",
                   help="folder of SR results (any pair layout; names must match --hr)")
    p.add_argument("--hr", type=Path, default=None, metavar="HR_DIR",
                   help="folder of HR ground truth pairs")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="data set folder: HR pairs, with LR views if the layout has them "
                        "(otherwise LR is made with MATLAB bicubic)")
    p.add_argument("--weights", default=None, metavar="PATH|NAME",
                   help="with --data: checkpoint file or registered model name (default: the "
                        "packaged model)")
    p.add_argument("--key", default=None, metavar="NAME",
                   help="with --data: checkpoint entry holding the weights (e.g. params or "
                        "params_ema; default: found automatically)")
    p.add_argument("--bicubic-only", action="store_true",
                   help="with --data: score only the bicubic baseline, run no model")
    p.add_argument("--no-bicubic", action="store_true",
                   help="with --data: skip the bicubic baseline")
    p.add_argument("--scale", type=int, default=None,
                   help="upscaling factor (default: the model's; 4 with --bicubic-only); also "
                        "the border crop of the basicsr protocols")
    p.add_argument("--protocol", action="append", default=None, metavar="NAME[,NAME]",
                   help="stereo, left, basicsr (Y, crop=scale, Gaussian SSIM), basicsr-rgb; "
                        "repeat or comma-separate (default: stereo,left)")
    p.add_argument("--metrics", default="psnr,ssim", metavar="NAME[,NAME]",
                   help="what to compute: psnr, ssim, lpips (per view and (L+R)/2), "
                        "consistency (disparity-warp error of the SR pair minus the HR pair's; "
                        "needs HR disparity maps); default psnr,ssim")
    p.add_argument("--lpips-net", default="alex", choices=["alex", "vgg"],
                   help="LPIPS backbone (default alex, the NTIRE perceptual track's)")
    p.add_argument("--lpips-weights", default=None, metavar="PATH|URL",
                   help="torchvision-format ImageNet weights of the LPIPS backbone (default: "
                        "torchvision's file, from the cache folder or downloaded into it)")
    p.add_argument("--lpips-sha256", default=None, metavar="HEX",
                   help="SHA-256 (or a prefix) the --lpips-weights file must have")
    p.add_argument("--lpips-heads", default=None, metavar="PATH",
                   help="LPIPS v0.1 linear heads file (default: the lpips package's, the "
                        "cache folder's or a download, checked against the official hash)")
    p.add_argument("--layout", default="auto",
                   help="pair layout of --data/--hr (default: auto-detect)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="write per-pair and mean scores as JSON")
    p.add_argument("--csv", type=Path, default=None, metavar="FILE",
                   help="write per-pair and mean scores as CSV")
    p.add_argument("--figure", type=Path, default=None, metavar="FILE.png",
                   help="write side-by-side crops (bicubic, SR, HR) of the pairs as PNG")
    p.add_argument("--figure-pairs", type=int, default=4, metavar="N",
                   help="pairs shown in the figure (default 4, the first ones by name)")
    p.add_argument("--figure-crop", type=int, default=128, metavar="PX",
                   help="crop size in HR pixels (default 128, the most detailed window)")
    p.add_argument("--per-pair", action="store_true", help="also print each pair's table")
    add_device_arg(p)
    # Scores default to float32 on every device, so that they reproduce the field's
    # published numbers bit for bit; half precision is an explicit choice here.
    add_precision_arg(p, default="fp32")
    p.add_argument("--tile", type=int, default=None, metavar="ROWS",
                   help="LR rows per tile (default: automatic from free memory)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the model over the 4 flips that keep rows epipolar")
    p.add_argument("--no-tlc", action="store_true",
                   help="use global pooling instead of the test-time local converter")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out unreadable, incomplete or mismatched pairs with a warning "
                        "instead of stopping; they are listed in the report")
    p.add_argument("--overwrite", action="store_true", help="replace existing report files")
    p.set_defaults(func=run)


def _protocols(args: argparse.Namespace, scale: int) -> list[Any]:
    from ..metrics import METRIC_NAMES, get_protocol

    names: list[str] = []
    for item in args.protocol or ["stereo,left"]:
        names += [n.strip() for n in item.split(",") if n.strip()]
    if not names:
        raise InputError("--protocol needs at least one name")
    protos: dict[str, Any] = {}
    for n in names:
        if n.lower() in METRIC_NAMES:
            raise InputError(f"--protocol: {n!r} is a metric, not a protocol; choose metrics "
                             f"with --metrics (e.g. --metrics psnr,ssim,{n.lower()})")
        p = get_protocol(n, scale=scale)
        protos.setdefault(p.name, p)
    return list(protos.values())


def _check_outputs(args: argparse.Namespace) -> list[Path]:
    outs = [p for p in (args.json, args.csv, args.figure) if p is not None]
    if len(set(map(str, outs))) != len(outs):
        raise InputError("--json, --csv and --figure must be different files")
    if args.figure is not None and args.figure.suffix.lower() != ".png":
        raise InputError(f"{args.figure}: the figure is written as PNG; use a .png name")
    for p in outs:
        check_output_file(p, args.overwrite)
    return outs


class _FigureCrops:
    """Collects the crops of the first pairs for the comparison figure (not whole images)."""

    def __init__(self, limit: int, size: int, labels: dict[str, str]) -> None:
        self.limit, self.size, self.labels = limit, size, labels
        self.rows: list[tuple[str, str, list[tuple[str, np.ndarray]]]] = []

    def add(self, name: str, hr_left: np.ndarray,
            outputs: dict[str, np.ndarray]) -> None:
        from ..figures import crop_box, detail_box

        if len(self.rows) >= self.limit:
            return
        box = detail_box(hr_left, self.size)
        panels = [(m, crop_box(img, box)) for m, img in outputs.items()]
        panels.append(("HR", crop_box(hr_left, box)))
        self.rows.append((name, f"{name}: left view, crop at x={box[1]}, y={box[0]}", panels))

    def render(self, scores: dict[str, dict[str, Any]], first_protocol: str) -> bytes:
        from ..figures import FigureRow, comparison_figure, png_bytes

        rows = []
        for name, title, panels in self.rows:
            labelled = []
            for method, img in panels:
                label = self.labels.get(method, method)
                s = scores.get(name, {}).get(method, {}).get(first_protocol)
                if s is not None:
                    shown = [fmt.format(s[k]) for k, fmt in
                             (("psnr", "{:.2f} dB"), ("ssim", "{:.4f}"), ("lpips", "LPIPS {:.4f}"))
                             if k in s]
                    if shown:
                        label += " " + " / ".join(shown)
                labelled.append((label, img))
            rows.append(FigureRow(title, labelled))
        return png_bytes(comparison_figure(rows))


def run(args: argparse.Namespace) -> int:
    from .. import evaluate as ev

    folder_mode = args.sr is not None or args.hr is not None
    if folder_mode and args.data is not None:
        raise InputError("give either --sr and --hr, or --data, not both")
    if folder_mode and (args.sr is None or args.hr is None):
        raise InputError("--sr and --hr go together: give both folders")
    if not folder_mode and args.data is None:
        raise InputError("nothing to evaluate: give --sr SR_DIR --hr HR_DIR, or --data DIR")
    if args.scale is not None and args.scale < 1:
        raise InputError(f"--scale must be a positive integer, got {args.scale}")
    if args.figure_pairs < 1 or args.figure_crop < 8:
        raise InputError("--figure-pairs must be >= 1 and --figure-crop >= 8")
    if args.tile is not None and args.tile < 1:
        raise InputError(f"--tile must be a positive number of rows, got {args.tile}")
    if args.key is not None and (folder_mode or args.bicubic_only):
        raise InputError("--key picks the model's weights in a checkpoint; it applies to --data "
                         "with a model (not to --sr/--hr or --bicubic-only)")
    if args.bicubic_only and args.no_bicubic:
        raise InputError("--bicubic-only and --no-bicubic exclude each other")
    for folder in (args.sr, args.hr, args.data):
        if folder is not None and not folder.is_dir():
            raise InputError(f"{folder}: folder not found")
    _check_outputs(args)
    metrics = _metrics(args)
    lpips = _load_lpips(args) if "lpips" in metrics else None  # before any data is read

    t0 = time.perf_counter()
    crops = _FigureCrops(args.figure_pairs, args.figure_crop,
                         {"model": "SR", "bicubic": "Bicubic", "sr": "SR"})
    if folder_mode:
        scale = args.scale or 4
        protocols = _protocols(args, scale)

        def keep(name: str, views: tuple[np.ndarray, ...]) -> None:
            if args.figure is not None:
                crops.add(name, views[2], {"sr": views[0]})

        result = ev.evaluate_folders(args.sr, args.hr, protocols, layout_hr=args.layout,
                                     skip_bad=args.skip_bad, progress=True, on_pair=keep,
                                     metrics=metrics, lpips=lpips, scale=args.scale)
    else:
        result = _evaluate_data(args, ev, crops, metrics, lpips)
        if result is None:  # a rank other than 0 under torchrun: rank 0 reports
            return 0
    result.meta["seconds"] = round(time.perf_counter() - t0, 3)
    if lpips is not None:
        result.meta["lpips"] = f"{args.lpips_net} v0.1"

    outputs: list[tuple[Path, bytes]] = []
    if args.json is not None:
        outputs.append((args.json, result.to_json().encode()))
    if args.csv is not None:
        outputs.append((args.csv, result.to_csv().encode()))
    if args.figure is not None:
        scores = {ps.name: ps.scores for ps in result.pairs}
        outputs.append((args.figure, crops.render(scores, result.protocols[0].name)))
    commit_files(outputs, args.overwrite)

    order = ["sr", "hr", "data", "layout", "scale", "weights", "lr", "self_ensemble"]
    keys = sorted((k for k in result.meta if k != "seconds"),
                  key=lambda k: order.index(k) if k in order else len(order))
    head = ", ".join(f"{k}: {_shown(result.meta[k])}" for k in keys)
    print(head)
    print(result.format_table(per_pair=args.per_pair), end="")
    for path, _ in outputs:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _metrics(args: argparse.Namespace) -> tuple[str, ...]:
    from ..metrics import parse_metrics

    try:
        return parse_metrics(args.metrics)
    except InputError as exc:
        raise InputError(f"--metrics: {exc}") from None


def _load_lpips(args: argparse.Namespace) -> Any:
    """The LPIPS module (CLI names in the error messages); meta for the report."""
    from ..metrics import load_lpips
    from ..runtime import env_world, resolve_device

    try:
        model = load_lpips(args.lpips_net, backbone_weights=args.lpips_weights,
                           sha256=args.lpips_sha256, heads=args.lpips_heads,
                           device=resolve_device(args.device, env_world()[2]))
    except InputError as exc:
        msg = str(exc).replace("backbone_weights=PATH", "--lpips-weights PATH").replace(
            "heads=PATH", "--lpips-heads PATH").replace("sha256 must be", "--lpips-sha256 must be")
        raise type(exc)(msg) from None
    return model


def _evaluate_data(args: argparse.Namespace, ev: Any, crops: _FigureCrops,
                   metrics: tuple[str, ...], lpips: Any) -> Any:
    """Run the model (and bicubic) on ``--data``. Under torchrun each rank scores a disjoint
    shard of the pairs; rank 0 gets every pair's scores back, other ranks get ``None``."""
    from ..runtime import cleanup_distributed, env_world, init_distributed

    dist_info = None
    if env_world()[1] > 1:
        dist_info = init_distributed("auto", device=args.device)
        args.device = str(dist_info.device)
    try:
        return _evaluate_data_ranked(args, ev, crops, metrics, lpips)
    finally:
        if dist_info is not None:
            cleanup_distributed(dist_info)


def _evaluate_data_ranked(args: argparse.Namespace, ev: Any, crops: _FigureCrops,
                          metrics: tuple[str, ...], lpips: Any) -> Any:
    from ..data.pairs import find_pairs, natural_key
    from ..runtime import distributed_active, env_world, run_sharded

    model = None
    if not args.bicubic_only:
        from ..models.checkpoint import load_model
        from ..models.registry import DEFAULT_MODEL

        model = load_model(args.weights or DEFAULT_MODEL, device=args.device,
                           tlc=not args.no_tlc, key=args.key)
        if args.scale is not None and args.scale != int(model.scale):
            raise InputError(f"the model upscales x{int(model.scale)} but --scale is "
                             f"{args.scale}; drop --scale or use a x{args.scale} model")
    scale = int(model.scale) if model is not None else (args.scale or 4)
    protocols = _protocols(args, scale)
    files = find_pairs(args.data, layout=args.layout, scale=scale,
                       on_error="skip" if args.skip_bad else "raise")

    def keep(pair: Any, outputs: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        if args.figure is not None:
            crops.add(pair.name, pair.hr_left, {m: v[0] for m, v in outputs.items()})

    upscale_kwargs = {"tile": args.tile, "self_ensemble": args.self_ensemble,
                      "precision": args.precision}
    methods = (("model",) if model is not None else ()) + \
        (("bicubic",) if not args.no_bicubic else ())
    ranked = distributed_active()

    def work(mine: list[Any]) -> tuple[Any, list[Any]]:
        bad: list[tuple[str, str]] = []
        loaded = 0
        with_disp = "consistency" in metrics

        def pairs() -> Any:
            nonlocal loaded
            for pair in ev.iter_eval_pairs(mine, scale, disparity=with_disp,
                                           skipped=bad if args.skip_bad else None):
                loaded += 1
                yield pair

        try:
            res = ev.evaluate_model(model, pairs(), protocols, bicubic=not args.no_bicubic,
                                    upscale_kwargs=upscale_kwargs, on_output=keep,
                                    progress=not ranked or env_world()[0] == 0,
                                    total=len(mine), metrics=metrics, lpips=lpips)
        except InputError:
            if loaded:  # a real failure, not "every pair of this share was skipped"
                raise
            if mine and not bad:
                raise
            res = ev.EvaluationResult(methods, tuple(protocols))
        res.skipped = bad
        return res, crops.rows

    parts = run_sharded(list(files), work)
    if parts is None:
        return None
    result = parts[0][0]
    if ranked:
        result.pairs = [p for res, _ in parts for p in res.pairs]
        crops.rows = [r for _, rows in parts for r in rows][:crops.limit]
        lr_kinds = {res.meta.get("lr") for res, _ in parts if res.meta.get("lr") is not None}
        result.meta["lr"] = lr_kinds.pop() if len(lr_kinds) == 1 else "mixed"
        result.meta["ranks"] = len(parts)
    result.skipped = sorted(list(files.skipped) + [s for res, _ in parts for s in res.skipped],
                            key=lambda item: natural_key(item[0]))
    if not result.pairs:
        raise InputError(f"no pairs to evaluate: all {len(result.skipped)} were skipped (first: "
                         f"{result.skipped[0][0]}: {result.skipped[0][1]})")
    result.meta.update(data=str(args.data), layout=files.layout, scale=scale,
                       weights=None if model is None else str(args.weights or DEFAULT_MODEL),
                       self_ensemble=bool(args.self_ensemble), precision=args.precision)
    return result
