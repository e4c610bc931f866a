"""``stereosr upscale``: upscale one stereo pair or a folder of pairs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import InputError
from ._common import add_device_arg, add_precision_arg, check_free, commit_files, probe_writable

__all__ = ["add_parser", "output_names", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "upscale", help="upscale a stereo pair (or a folder of pairs) with NAFSSR",
        description="Upscale the LEFT and RIGHT views of a rectified stereo pair, or every pair "
                    "of --input-dir, and write PNGs into OUTDIR named after the inputs.")
    p.add_argument("left", nargs="?", type=Path, help="left view image")
    p.add_argument("right", nargs="?", type=Path, help="right view image")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR",
                   help="output folder (created if missing)")
    p.add_argument("--input-dir", type=Path, default=None,
                   help="folder of pairs (*_L/*_R, *_left/*_right, im0/im1, left/ right/ ...)")
    p.add_argument("--weights", default=None, metavar="PATH|NAME",
                   help="checkpoint file or registered model name (default: the packaged model)")
    add_device_arg(p)
    add_precision_arg(p)
    p.add_argument("--tile", type=int, default=None, metavar="ROWS",
                   help="LR rows per tile (default: automatic from free memory)")
    p.add_argument("--overlap", type=int, default=24, metavar="ROWS",
                   help="LR rows of context around each tile (default 24)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average over the 4 flips that keep rows epipolar")
    p.add_argument("--rgb-permutations", action="store_true",
                   help="with --self-ensemble, also the 6 RGB permutations (24 passes)")
    p.add_argument("--no-tlc", action="store_true",
                   help="use global pooling instead of the test-time local converter")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch",
                   help="inference engine (onnxruntime needs --onnx)")
    p.add_argument("--onnx", type=Path, default=None, help="ONNX model for --backend onnxruntime")
    p.add_argument("--skip-bad", action="store_true",
                   help="in folder mode, skip unreadable or incomplete pairs instead of stopping")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true", help="print a JSON summary line on stdout")
    p.set_defaults(func=run)


def output_names(left: Path, right: Path) -> tuple[str, str]:
    """Output file names for a pair: the input stems as PNG, with _L/_R on a collision."""
    nl, nr = left.stem + ".png", right.stem + ".png"
    if nl == nr:
        nl, nr = f"{left.stem}_L.png", f"{right.stem}_R.png"
    return nl, nr


def _folder_outputs(root: Path, pairs: list[Any], outdir: Path) -> list[tuple[Path, Path]]:
    """Mirror each input's relative folder under ``outdir``; stems collide -> _L/_R."""
    outs: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    for pf in pairs:
        nl, nr = output_names(pf.left, pf.right)
        ol = outdir / pf.left.parent.relative_to(root) / nl
        orr = outdir / pf.right.parent.relative_to(root) / nr
        if ol == orr or ol in seen or orr in seen:
            ol = ol.with_name(Path(nl).stem + "_L.png") if not nl.endswith("_L.png") else ol
            orr = orr.with_name(Path(nr).stem + "_R.png") if not nr.endswith("_R.png") else orr
        if ol in seen or orr in seen or ol == orr:
            raise InputError(f"output name collision for pair {pf.name}; rename the inputs")
        seen.update((ol, orr))
        outs.append((ol, orr))
    return outs


def _load_backend(args: argparse.Namespace) -> Any:
    if args.backend == "onnxruntime":
        if args.precision is not None:
            raise InputError("--precision applies to --backend torch; an ONNX file runs in "
                             "the precision it was exported in")
        if args.onnx is None:
            raise InputError("--backend onnxruntime needs --onnx MODEL.onnx (make one with "
                             "`stereosr export --onnx`)")
        from ..infer.onnx_backend import OnnxStereoModel

        return OnnxStereoModel(args.onnx, device=args.device)
    from ..models.checkpoint import load_model
    from ..models.registry import DEFAULT_MODEL

    return load_model(args.weights or DEFAULT_MODEL, device=args.device, tlc=not args.no_tlc)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..infer.upscale import upscale
    from ..io import encode_image, read_image

    if args.input_dir is None and (args.left is None or args.right is None):
        raise InputError("give LEFT and RIGHT images, or --input-dir DIR")
    if args.input_dir is not None and (args.left is not None or args.right is not None):
        raise InputError("give either LEFT RIGHT or --input-dir, not both")
    if args.tile is not None and args.tile < 1:
        raise InputError(f"--tile must be a positive number of rows, got {args.tile}")
    if args.overlap < 0:
        raise InputError(f"--overlap must be >= 0, got {args.overlap}")

    if args.input_dir is not None:
        from ..data.pairs import find_pairs

        if not args.input_dir.is_dir():
            raise InputError(f"{args.input_dir}: input folder not found")
        pairs = list(find_pairs(args.input_dir, on_error="skip" if args.skip_bad else "raise"))
        jobs = [(pf.name, pf.left, pf.right) for pf in pairs]
        outs = _folder_outputs(args.input_dir, pairs, args.output)
    else:
        for p in (args.left, args.right):
            if not p.exists():
                raise InputError(f"{p}: file not found")
        jobs = [(args.left.stem, args.left, args.right)]
        nl, nr = output_names(args.left, args.right)
        outs = [(args.output / nl, args.output / nr)]

    probe_writable(args.output)
    check_free([p for pair in outs for p in pair], args.overwrite)
    if args.input_dir is None:
        # Read the pair before loading the model: bad input fails fast.
        first = (read_image(args.left), read_image(args.right))
    from ..runtime import cleanup_distributed, env_world, init_distributed, run_sharded

    dist_info = None
    if env_world()[1] > 1:
        # Under torchrun: one deterministic, disjoint shard of the pairs per rank.
        dist_info = init_distributed("auto", device=args.device)
        if args.backend == "torch":
            args.device = str(dist_info.device)
    model = _load_backend(args)

    t0 = time.perf_counter()

    def work(items: list[Any]) -> list[str]:
        done: list[str] = []
        it = tqdm(items, desc="upscale", unit="pair", disable=None, file=sys.stderr)
        for (name, lp, rp), (ol, orr) in it:
            it.set_postfix_str(name)
            if args.input_dir is None:
                a_l, a_r = first
            else:
                a_l, a_r = read_image(lp), read_image(rp)
            if a_l.shape != a_r.shape:
                raise InputError(f"{lp} and {rp}: views differ in size ({a_l.shape[1]}x"
                                 f"{a_l.shape[0]} vs {a_r.shape[1]}x{a_r.shape[0]}); a stereo "
                                 "pair needs two views of the same size")
            sr_l, sr_r = upscale(a_l, a_r, model, tile=args.tile, overlap=args.overlap,
                                 self_ensemble=args.self_ensemble or args.rgb_permutations,
                                 rgb_permutations=args.rgb_permutations,
                                 precision=args.precision)
            commit_files([(ol, encode_image(sr_l)), (orr, encode_image(sr_r))], args.overwrite)
            done += [str(ol), str(orr)]
        return done

    try:
        parts = run_sharded(list(zip(jobs, outs)), work)
    finally:
        if dist_info is not None:
            cleanup_distributed(dist_info)
    seconds = time.perf_counter() - t0
    if parts is None:  # a rank other than 0 under torchrun: rank 0 reports
        return 0
    written = [w for part in parts for w in part]
    if args.json:
        print(json.dumps({"pairs": len(written) // 2, "outputs": written,
                          "scale": int(model.scale), "seconds": round(seconds, 3),
                          "weights": (str(args.onnx) if args.backend == "onnxruntime"
                                      else str(args.weights or "default")),
                          "backend": args.backend,
                          "self_ensemble": bool(args.self_ensemble or args.rgb_permutations)}))
    else:
        print(f"wrote {len(written)} images to {args.output} in {seconds:.1f} s",
              file=sys.stderr)
    return 0
