"""``stereosr upscale``: upscale one stereo pair or a folder of pairs."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OutputExistsError, StereoSRWarning
from ..files import check_writable_dir, removed_if_left_empty
from ._common import add_device_arg, add_precision_arg, check_free, commit_files

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
                   help="folder of pairs (*_L/*_R, *_left/*_right, im0/im1, left/ right/ ...; "
                        "the LR views where the layout also holds HR); outputs mirror its "
                        "folders and file names")
    p.add_argument("--layout", default="auto",
                   help="pair layout of --input-dir (default auto; see docs/data.md)")
    p.add_argument("--weights", default=None, metavar="PATH|NAME",
                   help="checkpoint file or registered model name (default: the packaged model)")
    add_device_arg(p)
    add_precision_arg(p)
    p.add_argument("--tile", type=int, default=None, metavar="ROWS",
                   help="LR rows per tile (default: automatic from free memory)")
    p.add_argument("--overlap", type=int, default=None, metavar="ROWS",
                   help="LR rows of context around each tile (default: the model's TLC window "
                        "height, 45 for the packaged model, at least 24)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average over the 4 flips that keep rows epipolar")
    p.add_argument("--rgb-permutations", action="store_true",
                   help="with --self-ensemble, also the 6 RGB permutations (24 passes)")
    p.add_argument("--no-tlc", action="store_true",
                   help="use global pooling instead of the test-time local converter")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch",
                   help="inference engine (onnxruntime needs --onnx)")
    p.add_argument("--onnx", type=Path, default=None, help="ONNX model for --backend onnxruntime")
    p.add_argument("--key", default=None, metavar="NAME",
                   help="checkpoint entry holding the weights (e.g. params or params_ema; "
                        "default: found automatically)")
    p.add_argument("--skip-bad", action="store_true",
                   help="in folder mode, skip unreadable, incomplete or mismatched pairs with a "
                        "warning instead of stopping (they are listed in the summary)")
    p.add_argument("--skip-existing", action="store_true",
                   help="keep pairs whose two outputs exist and do the rest, replacing the lone "
                        "output of a pair left half done (finishes an interrupted run)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true", help="print a JSON summary line on stdout")
    p.set_defaults(func=run)


def output_names(left: Path, right: Path) -> tuple[str, str]:
    """Output file names for a pair: the input stems as PNG, with _L/_R on a collision."""
    nl, nr = left.stem + ".png", right.stem + ".png"
    if nl == nr:
        nl, nr = f"{left.stem}_L.png", f"{right.stem}_R.png"
    return nl, nr


@dataclass(frozen=True)
class _Job:
    """One pair to upscale: the views read, the outputs written and, when the inputs are LR
    views of a layout that also holds HR, the HR views (their size is checked)."""

    name: str
    left: Path
    right: Path
    out_left: Path
    out_right: Path
    hr_left: Path | None = None
    hr_right: Path | None = None


def _folder_jobs(root: Path, pairs: list[Any], outdir: Path) -> list[_Job]:
    """Outputs mirror the input folder: the same relative folders and file names (as PNG).

    In layouts that hold HR and LR views (official test sets, patches), the LR views are
    upscaled and the results take the HR views' places, so the output folder is scored against
    the input folder as it is. ``_L``/``_R`` are added only where two outputs would collide.
    """
    from ..files import input_places, landing_place, mirrored_path

    jobs: list[_Job] = []
    owner: dict[Path, str] = {}
    inputs = input_places(p for pf in pairs
                          for p in (pf.left, pf.right, pf.lr_left, pf.lr_right) if p is not None)
    for pf in pairs:
        ol = mirrored_path(pf.left, root, outdir, ".png")
        orr = mirrored_path(pf.right, root, outdir, ".png")
        if ol == orr:
            ol, orr = ol.with_name(ol.stem + "_L.png"), orr.with_name(orr.stem + "_R.png")
        for out, src in ((ol, pf.left), (orr, pf.right)):
            if out in owner:
                raise InputError(f"{src} and {owner[out]} would both be written as {out}; "
                                 "rename one of them")
            if landing_place(out) in inputs:
                raise InputError(f"{out}: would replace an input image; choose another output "
                                 "folder")
            owner[out] = str(src)
        if pf.lr_left is not None and pf.lr_right is not None:
            jobs.append(_Job(pf.name, pf.lr_left, pf.lr_right, ol, orr, pf.left, pf.right))
        else:
            jobs.append(_Job(pf.name, pf.left, pf.right, ol, orr))
    return jobs


def _drop_pairs_without_lr(pairs: Any, root: Path, skip_bad: bool) -> list[tuple[str, str]]:
    """In a folder where some pairs come with LR views (patch folders with ``lr0/lr1``), a
    pair without them is bad: upscaling its HR views instead would silently give outputs
    ``scale`` times the size of the others. Raises :class:`InputError` for the first one, or
    with ``skip_bad`` removes them from ``pairs`` (with a warning each) and returns them as
    ``(name, reason)``."""
    with_lr = sum(p.lr_left is not None and p.lr_right is not None for p in pairs)
    if with_lr in (0, len(pairs)):
        return []
    dropped = []
    for p in list(pairs):
        if p.lr_left is not None and p.lr_right is not None:
            continue
        reason = (f"{p.left.parent}: no LR views (lr0/lr1) beside {p.left.name}, while "
                  f"{with_lr} other pair(s) of {root} have them; upscaling the HR views "
                  "instead would give outputs of another size")
        if not skip_bad:
            raise InputError(f"pair {p.name}: {reason}; add the LR views, or leave such pairs "
                             "out with --skip-bad")
        warnings.warn(f"skipping pair {p.name!r}: {reason}", StereoSRWarning, stacklevel=2)
        dropped.append((p.name, reason))
        pairs.remove(p)
    return dropped


def _check_official_lr(root: Path, scale: int) -> None:
    """Refuse an official test folder whose LR views are all for another scale."""
    sets = [root] if (root / "hr").is_dir() else [d for d in sorted(root.iterdir())
                                                  if (d / "hr").is_dir()]
    for s in sets:
        found = sorted(d.name for d in s.iterdir()
                       if d.is_dir() and re.fullmatch(r"lr_x\d+", d.name))
        if found and f"lr_x{scale}" not in found:
            where = ", ".join(str(s / f) + "/" for f in found)
            raise InputError(f"{s}: the LR views are in {where} but the model upscales "
                             f"x{scale}; use a model of that scale, or a folder with "
                             f"lr_x{scale}/")


def _describe(a: np.ndarray) -> str:
    kind = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}[a.shape[2]]
    return f"{8 * a.dtype.itemsize}-bit {kind}"


def _read_job(job: _Job, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Both views of a job, checked: same size, LR size matching the HR views."""
    from ..data.pairs import check_lr_size
    from ..io import image_size, read_image

    a_l, a_r = read_image(job.left), read_image(job.right)
    if a_l.shape[:2] != a_r.shape[:2]:
        raise InputError(f"pair {job.name}: views differ in size ({job.left} is "
                         f"{a_l.shape[1]}x{a_l.shape[0]}, {job.right} is {a_r.shape[1]}x"
                         f"{a_r.shape[0]}); a stereo pair needs two views of the same size")
    if job.hr_left is not None and job.hr_right is not None:
        check_lr_size(job.name, job.left, a_l.shape[:2], image_size(job.hr_left), scale)
        check_lr_size(job.name, job.right, a_r.shape[:2], image_size(job.hr_right), scale)
    if a_l.shape[2] != a_r.shape[2] or a_l.dtype != a_r.dtype:
        warnings.warn(f"pair {job.name}: {job.left} is {_describe(a_l)} and {job.right} is "
                      f"{_describe(a_r)}; both are upscaled as RGB and each is written back in "
                      "its own format", StereoSRWarning, stacklevel=2)
    return a_l, a_r


def _load_backend(args: argparse.Namespace) -> Any:
    if args.backend == "onnxruntime":
        if args.precision is not None:
            raise InputError("--precision applies to --backend torch; an ONNX file runs in "
                             "the precision it was exported in")
        if args.onnx is None:
            raise InputError("--backend onnxruntime needs --onnx MODEL.onnx (make one with "
                             "`stereosr export --onnx`)")
        if args.key is not None:
            raise InputError("--key selects checkpoint weights; it does not apply to --onnx")
        from ..infer.onnx_backend import OnnxStereoModel

        return OnnxStereoModel(args.onnx, device=args.device)
    from ..models.checkpoint import load_model
    from ..models.registry import DEFAULT_MODEL

    return load_model(args.weights or DEFAULT_MODEL, device=args.device, tlc=not args.no_tlc,
                      key=args.key)


def _split_existing(jobs: list[_Job]) -> tuple[list[_Job], list[_Job], set[str]]:
    """(jobs to do, jobs whose two outputs exist, names of jobs with one output only).

    A pair with one output is what a run killed between its two files leaves: it is done again
    and its lone output replaced (with a warning naming it)."""
    todo, done, redo = [], [], set()
    for j in jobs:
        have = (j.out_left.exists(), j.out_right.exists())
        if all(have):
            done.append(j)
            continue
        if any(have):
            lone = j.out_left if have[0] else j.out_right
            warnings.warn(f"pair {j.name!r}: {lone} exists without the pair's other output; "
                          "upscaling the pair again and replacing it", StereoSRWarning,
                          stacklevel=2)
            redo.add(j.name)
        todo.append(j)
    return todo, done, redo


def run(args: argparse.Namespace) -> int:
    with removed_if_left_empty(args.output):  # a failed run leaves no empty output folder
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.pairs import natural_key
    from ..files import remove_stale_temps
    from ..infer.upscale import upscale
    from ..io import encode_image
    from ..models.registry import DEFAULT_MODEL

    if args.input_dir is None and (args.left is None or args.right is None):
        raise InputError("give LEFT and RIGHT images, or --input-dir DIR")
    if args.input_dir is not None and (args.left is not None or args.right is not None):
        raise InputError("give either LEFT RIGHT or --input-dir, not both")
    if args.input_dir is None and args.layout != "auto":
        raise InputError("--layout applies to --input-dir")
    if args.tile is not None and args.tile < 1:
        raise InputError(f"--tile must be a positive number of rows, got {args.tile}")
    if args.overlap is not None and args.overlap < 0:
        raise InputError(f"--overlap must be >= 0, got {args.overlap}")
    if args.skip_existing and args.overwrite:
        raise InputError("--skip-existing and --overwrite exclude each other")

    skipped: list[tuple[str, str]] = []
    pairs: Any = None
    if args.input_dir is not None:
        from ..data.pairs import find_pairs

        if args.input_dir.is_file():
            raise InputError(f"{args.input_dir}: --input-dir takes a folder of pairs; for one "
                             "pair give its LEFT and RIGHT images instead")
        if not args.input_dir.is_dir():
            raise InputError(f"{args.input_dir}: input folder not found")
        pairs = find_pairs(args.input_dir, layout=args.layout,
                           on_error="skip" if args.skip_bad else "raise")
        skipped += pairs.skipped
        skipped += _drop_pairs_without_lr(pairs, args.input_dir, args.skip_bad)
        jobs = _folder_jobs(args.input_dir, list(pairs), args.output)
    else:
        for p in (args.left, args.right):
            if not p.exists():
                raise InputError(f"{p}: file not found")
        nl, nr = output_names(args.left, args.right)
        jobs = [_Job(args.left.stem, args.left, args.right, args.output / nl,
                     args.output / nr)]
        from ..files import input_places, landing_place

        inputs = input_places([args.left, args.right])
        for out in (jobs[0].out_left, jobs[0].out_right):
            if landing_place(out) in inputs:
                raise InputError(f"{out}: would replace an input image; choose another output "
                                 "folder")

    check_writable_dir(args.output)
    existing: list[_Job] = []
    redo: set[str] = set()
    if args.skip_existing:
        jobs, existing, redo = _split_existing(jobs)
    try:
        check_free([p for j in jobs if j.name not in redo for p in (j.out_left, j.out_right)],
                   args.overwrite)
    except OutputExistsError as exc:
        if args.input_dir is None:
            raise
        raise OutputExistsError(f"{exc}; to finish an interrupted run, keeping the pairs "
                                "done, pass --skip-existing") from None
    # Every output folder of the run, finished pairs' too: a run killed between publishing a
    # pair and removing its temporary files leaves them beside a finished pair.
    every = jobs + existing
    for folder in sorted({j.out_left.parent for j in every} | {j.out_right.parent for j in every}):
        gone = remove_stale_temps(folder)
        if gone:
            print(f"removed {len(gone)} temporary file(s) of an interrupted run from {folder}",
                  file=sys.stderr)
    first = None
    if args.input_dir is None and jobs:
        # Read the pair before loading the model: bad input fails fast.
        first = _read_job(jobs[0], 1)
    from ..runtime import cleanup_distributed, env_world, init_distributed, run_sharded

    dist_info = None
    if env_world()[1] > 1:
        # Under torchrun: one deterministic, disjoint shard of the pairs per rank.
        dist_info = init_distributed("auto", device=args.device)
        if args.backend == "torch":
            args.device = str(dist_info.device)
    try:
        model = _load_backend(args)
        scale = int(model.scale)
        if pairs is not None and pairs.layout == "official_test":
            # The LR folder follows the model's scale: lr_x<scale>/.
            from ..data.pairs import find_pairs

            _check_official_lr(args.input_dir, scale)
            keep = {j.name for j in jobs}
            with warnings.catch_warnings(record=True):  # said once below, not twice
                warnings.simplefilter("always")
                again = find_pairs(args.input_dir, layout="official_test", scale=scale,
                                   on_error="skip" if args.skip_bad else "raise")
            known = {n for n, _ in skipped}
            for name, reason in again.skipped:
                if name not in known:
                    warnings.warn(f"skipping pair {name!r}: {reason}", StereoSRWarning,
                                  stacklevel=1)
                    skipped.append((name, reason))
            jobs = [j for j in _folder_jobs(args.input_dir, list(again), args.output)
                    if j.name in keep]

        t0 = time.perf_counter()

        def work(items: list[_Job]) -> tuple[list[str], list[tuple[str, str]], list[str]]:
            done: list[str] = []
            bad: list[tuple[str, str]] = []
            taken: list[str] = []
            it = tqdm(items, desc="upscale", unit="pair", disable=None, file=sys.stderr)
            for job in it:
                it.set_postfix_str(job.name)
                try:
                    a_l, a_r = first if first is not None else _read_job(job, scale)
                except InputError as exc:
                    if not args.skip_bad:
                        if args.input_dir is None:
                            raise
                        kept = (f"; the {len(done) // 2} pair(s) written before it stay (add "
                                "--skip-existing to keep them)" if done else "")
                        raise InputError(f"{exc}; pass --skip-bad to leave out bad pairs{kept}"
                                         ) from None
                    warnings.warn(f"skipping pair {job.name!r}: {exc}", StereoSRWarning,
                                  stacklevel=1)
                    bad.append((job.name, str(exc)))
                    continue
                sr_l, sr_r = upscale(a_l, a_r, model, tile=args.tile, overlap=args.overlap,
                                     self_ensemble=args.self_ensemble or args.rgb_permutations,
                                     rgb_permutations=args.rgb_permutations,
                                     precision=args.precision)
                try:
                    commit_files([(job.out_left, encode_image(sr_l)),
                                  (job.out_right, encode_image(sr_r))],
                                 args.overwrite or job.name in redo, checked=True)
                except OutputExistsError as exc:
                    if not args.skip_existing:
                        raise OutputExistsError(
                            f"{exc}; the {len(done) // 2} pair(s) this run finished stay; "
                            "to finish the rest without replacing anything, pass "
                            "--skip-existing") from None
                    # Another run finished this pair meanwhile: keep its files.
                    warnings.warn(f"pair {job.name!r}: finished meanwhile by another run "
                                  f"writing into {args.output}; kept its files",
                                  StereoSRWarning, stacklevel=1)
                    taken.append(job.name)
                    continue
                done += [str(job.out_left), str(job.out_right)]
            return done, bad, taken

        parts = run_sharded(jobs, work)
    finally:
        if dist_info is not None:
            cleanup_distributed(dist_info)
    seconds = time.perf_counter() - t0
    if parts is None:  # a rank other than 0 under torchrun: rank 0 reports
        return 0
    written = [w for done, _, _ in parts for w in done]
    skipped += [s for _, bad, _ in parts for s in bad]
    skipped.sort(key=lambda item: natural_key(item[0]))
    kept = [j.name for j in existing] + [n for _, _, taken in parts for n in taken]
    if jobs and not written and not kept:
        raise InputError(f"no pair could be upscaled: all {len(skipped)} were skipped (first: "
                         f"{skipped[0][0]}: {skipped[0][1]})")
    if args.json:
        print(json.dumps({"pairs": len(written) // 2, "outputs": written,
                          "skipped": [{"pair": n, "reason": r} for n, r in skipped],
                          "kept_existing": kept,
                          "scale": scale, "seconds": round(seconds, 3),
                          "weights": (str(args.onnx) if args.backend == "onnxruntime"
                                      else str(args.weights or DEFAULT_MODEL)),
                          "backend": args.backend,
                          "self_ensemble": bool(args.self_ensemble or args.rgb_permutations)}))
    else:
        line = f"wrote {len(written)} images to {args.output} in {seconds:.1f} s"
        if kept:
            line += f"; kept {len(kept)} finished pair(s)"
        if skipped:
            names = ", ".join(n for n, _ in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
            line += f"; skipped {len(skipped)} pair(s): {names}"
        print(line, file=sys.stderr)
    return 0
