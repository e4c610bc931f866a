"""Build a folder of synthetic HR stereo pairs (Flickr1024 layout) from photographs.

Every pair is rendered by :mod:`stereosr.data.synthetic` from one photo, shrunk first by a
factor of at least ``min_downscale`` (2 by default) with an antialiasing filter, so that JPEG
artefacts of the photo fall below the output's pixel scale. Output::

    OUT_DIR/0001_L.png, 0001_R.png, ...     8-bit RGB views
    OUT_DIR/disparity/0001.png, ...         left disparity, 16-bit PNG, value / 256 = pixels
    OUT_DIR/synth.json                      settings and, per pair, photo, shrink factor, kind

Pair ``i`` depends only on ``(seed, i)`` and the photo list, not on the number of workers.
Files whose path mentions ``motorcycle`` are refused: scikit-image's Middlebury Motorcycle pair
is the project's test pair and must never be seen in training.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InputError
from ..imageops import as_rgb, to_float
from ..io import atomic_write_bytes, check_writable_dir, image_size, read_image, write_image
from .augment import texture_energy
from .pairs import IMAGE_EXTENSIONS, natural_key
from .synthetic import FIELD_KINDS, synthesize_pair

__all__ = [
    "FORBIDDEN_WORD",
    "SynthReport",
    "SynthSettings",
    "build_synthetic_set",
    "check_allowed",
    "gather_photos",
    "load_photo",
    "resize_photo",
    "texture_energy",
]

FORBIDDEN_WORD = "motorcycle"
LOSSY_EXTENSIONS = frozenset({".jpg", ".jpeg", ".webp"})
_MARGIN = 2  # output pixels rendered around each view (see synthetic.render_scene)


@dataclass(frozen=True)
class SynthSettings:
    """How pairs are made. Sizes are (H, W) output pixels; disparities in output pixels.

    ``size`` is the largest pair; each side is drawn in ``[(1 - size_jitter) * side, side]``
    and rounded down to a multiple of 12 (so x2, x3 and x4 need no cropping). Photos too
    small for ``size`` give smaller pairs, down to ``min_size``. The shrink factor from the
    photo to the output is drawn log-uniformly in ``[m, max_downscale_ratio * m]`` with
    ``m = min_downscale`` for lossy files (JPEG, WebP) and ``min_downscale_lossless`` for
    others, quantised to steps of 0.25.

    Photos whose longer side is at least ``halve_above`` pixels (4K wallpapers, mostly sky and
    bokeh at full size) are halved first. With ``min_texture > 0`` each pair is drawn up to
    ``texture_tries`` times until its left view's texture (:func:`texture_energy`) reaches
    ``min_texture``; otherwise the most textured draw is kept. Smooth patches teach SR little.
    """

    size: tuple[int, int] = (360, 720)
    size_jitter: float = 0.25
    min_size: tuple[int, int] = (120, 360)
    max_disparity: float = 60.0
    kind: str = "mixed"
    min_downscale: float = 2.0
    min_downscale_lossless: float = 1.0
    max_downscale_ratio: float = 2.5
    supersample: int = 2
    halve_above: int | None = None
    min_texture: float = 0.0
    texture_tries: int = 8

    def __post_init__(self) -> None:
        if self.kind != "mixed" and self.kind not in FIELD_KINDS:
            raise InputError(f"unknown disparity field kind {self.kind!r}; choose mixed or one "
                             f"of {', '.join(FIELD_KINDS)}")
        if min(self.size) < 12 or any(a < b for a, b in zip(self.size, self.min_size)):
            raise InputError(f"pair size {self.size} must be at least min_size {self.min_size}")
        if not 0.0 <= self.size_jitter < 1.0:
            raise InputError(f"size_jitter must be in [0, 1), got {self.size_jitter}")
        if self.min_downscale < 1.0 or self.min_downscale_lossless <= 0.0:
            raise InputError("min_downscale must be >= 1 (photos are shrunk, never enlarged)")
        if self.min_texture < 0 or self.texture_tries < 1:
            raise InputError("min_texture must be >= 0 and texture_tries >= 1")
        if self.halve_above is not None and self.halve_above < 2:
            raise InputError("halve_above must be >= 2 pixels or None")
        if self.max_disparity < 0 or self.supersample < 1 or self.max_downscale_ratio < 1:
            raise InputError("max_disparity must be >= 0, supersample and "
                             "max_downscale_ratio >= 1")


@dataclass
class SynthReport:
    """What :func:`build_synthetic_set` wrote."""

    pairs: int = 0
    photos_used: list[str] = field(default_factory=list)
    photos_skipped: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def check_allowed(path: str | os.PathLike[str]) -> Path:
    """Refuse (InputError) any file whose path mentions the test pair's name."""
    p = Path(path)
    if any(FORBIDDEN_WORD in part.lower() for part in p.parts):
        raise InputError(f"{p}: refusing to use it: the Middlebury Motorcycle pair is the test "
                         "pair of this project and must never be used to make training data")
    return p


def gather_photos(sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Image files named by ``sources`` (files, or folders searched recursively), in natural
    order, duplicates removed; refuses any file named like the test pair."""
    out: list[Path] = []
    seen: set[Path] = set()
    for src in sources:
        p = Path(src)
        if not p.exists():
            raise InputError(f"{p}: photo or folder not found")
        if p.is_dir():
            files = [f for f in p.rglob("*") if f.is_file()
                     and f.suffix.lower() in IMAGE_EXTENSIONS
                     and not any(part.startswith(".") for part in f.relative_to(p).parts)]
            files.sort(key=lambda f: natural_key(str(f.relative_to(p))))
        else:
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                raise InputError(f"{p}: not an image file name (expected one of "
                                 f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
            files = [p]
        for f in files:
            check_allowed(f)
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    if not out:
        raise InputError("no photos found in " + ", ".join(str(s) for s in sources))
    return out


def _halved(hw: tuple[int, int], s: SynthSettings) -> bool:
    return s.halve_above is not None and max(hw) >= s.halve_above


def load_photo(path: str | os.PathLike[str]) -> np.ndarray:
    """A photo as (H, W, 3) float32 in [0, 1] (grey repeated, alpha dropped)."""
    return to_float(as_rgb(read_image(check_allowed(path))))


def resize_photo(photo: np.ndarray, factor: float) -> np.ndarray:
    """Resize (H, W, C) float32 by ``factor`` (< 1 shrinks) with Pillow's antialiased bicubic."""
    if factor == 1.0:
        return photo
    h, w = photo.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(photo[..., c], dtype=np.float32))
                        .resize(size, Image.Resampling.BICUBIC)) for c in range(photo.shape[2])]
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0).astype(np.float32)


def _fits(photo_hw: tuple[int, int], pair_hw: tuple[int, int], factor: float,
          s: SynthSettings) -> bool:
    """Can a pair of ``pair_hw`` be rendered from the photo shrunk by ``factor``?"""
    h0, w0 = photo_hw
    h, w = pair_hw
    return (h0 / factor >= h + 2 * _MARGIN + 2
            and w0 / factor >= w + 2 * _MARGIN + s.max_disparity + 6)


def _round12(v: float) -> int:
    return int(v // 12) * 12


def _plan_pair(photo_hw: tuple[int, int], lossy: bool, s: SynthSettings,
               rng: np.random.Generator) -> tuple[tuple[int, int], float] | None:
    """(pair size, shrink factor) for one pair, or None if the photo is too small."""
    fmin = s.min_downscale if lossy else s.min_downscale_lossless
    jitter = rng.uniform(1.0 - s.size_jitter, 1.0, size=2)
    h = max(_round12(s.size[0] * jitter[0]), s.min_size[0])
    w = max(_round12(s.size[1] * jitter[1]), s.min_size[1])
    h0, w0 = photo_hw
    fmax = min(h0 / (h + 2 * _MARGIN + 2), w0 / (w + 2 * _MARGIN + s.max_disparity + 6))
    if fmax < fmin:  # shrink the pair to what the photo allows at the smallest factor
        h = min(h, _round12(h0 / fmin - 2 * _MARGIN - 2))
        w = min(w, _round12(w0 / fmin - 2 * _MARGIN - s.max_disparity - 6))
        if h < s.min_size[0] or w < s.min_size[1]:
            return None
        return (h, w), fmin
    top = min(fmax, fmin * s.max_downscale_ratio)
    f = math.exp(rng.uniform(math.log(fmin), math.log(top)))
    f = max(fmin, math.floor(f * 4.0) / 4.0)
    return (h, w), f


def _photo_size(path: Path) -> tuple[int, int]:
    """(H, W) from the image header (EXIF orientation applied)."""
    return image_size(path)


def _pair_names(index: int, width: int) -> tuple[str, str, str]:
    stem = f"{index + 1:0{width}d}"
    return f"{stem}_L.png", f"{stem}_R.png", stem


def _render_task(photo_path: str, indices: list[int], seed: int, settings: dict[str, Any],
                 out_dir: str, width: int, write_disparity: bool,
                 overwrite: bool) -> list[dict[str, Any]]:
    """Render the pairs ``indices`` of one photo (runs in a worker process)."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                              for k, v in settings.items()}
    s = SynthSettings(**fields)
    path = Path(photo_path)
    photo = load_photo(path)
    if _halved(photo.shape[:2], s):
        photo = resize_photo(photo, 0.5)
    lossy = path.suffix.lower() in LOSSY_EXTENSIONS
    scaled: dict[float, np.ndarray] = {}
    out = Path(out_dir)
    records = []
    for i in indices:
        rng = np.random.default_rng([seed, i])
        best: tuple[float, Any, float, tuple[int, int], str] | None = None
        tries = s.texture_tries if s.min_texture > 0 else 1
        for _ in range(tries):
            plan = _plan_pair(photo.shape[:2], lossy, s, rng)
            if plan is None:
                raise InputError(f"{path}: photo too small for a {s.min_size[0]}x"
                                 f"{s.min_size[1]} pair")
            (h, w), f = plan
            if f not in scaled:
                scaled[f] = resize_photo(photo, s.supersample / f)
            kind = s.kind
            if kind == "mixed":
                names = list(FIELD_KINDS)
                p = np.array([FIELD_KINDS[n] for n in names])
                kind = names[int(rng.choice(len(names), p=p / p.sum()))]
            drawn = synthesize_pair(scaled[f], (h, w), rng, kind=kind,
                                    max_disparity=s.max_disparity, supersample=s.supersample)
            energy = texture_energy(drawn.left) if tries > 1 else 0.0
            if best is None or energy > best[0]:
                best = (energy, drawn, f, (h, w), kind)
            if energy >= s.min_texture:
                break
        assert best is not None
        energy, pair, f, (h, w), kind = best
        lname, rname, stem = _pair_names(i, width)
        write_image(out / lname, np.clip(np.round(pair.left * 255), 0, 255).astype(np.uint8),
                    overwrite=overwrite)
        write_image(out / rname, np.clip(np.round(pair.right * 255), 0, 255).astype(np.uint8),
                    overwrite=overwrite)
        if write_disparity:
            code = np.clip(np.round(pair.disparity * 256.0), 1, 65535).astype(np.uint16)
            write_image(out / "disparity" / f"{stem}.png", code[..., None], overwrite=overwrite)
        records.append({"index": i + 1, "name": stem, "photo": str(path), "downscale": f,
                        "size": [h, w], "kind": kind, "texture": round(energy, 4),
                        "disparity_range": [round(float(pair.disparity.min()), 3),
                                            round(float(pair.disparity.max()), 3)]})
    return records


def build_synthetic_set(photos: Sequence[str | os.PathLike[str]],
                        out_dir: str | os.PathLike[str], pairs: int, seed: int = 0,
                        settings: SynthSettings | None = None, workers: int = 1,
                        write_disparity: bool = True, overwrite: bool = False,
                        progress: bool = False, command: str | None = None) -> SynthReport:
    """Render ``pairs`` synthetic stereo pairs from ``photos`` into ``out_dir``.

    Photos take turns (in a seeded order); photos too small for ``settings.min_size`` at
    their smallest shrink factor are skipped and listed in the report. Refuses a non-empty
    ``out_dir`` unless ``overwrite`` (then numbered pairs beyond ``pairs`` are removed).
    ``command``, when given, is recorded in ``synth.json`` as the way to rebuild the folder.
    """
    t0 = time.perf_counter()
    s = settings or SynthSettings()
    if pairs < 1:
        raise InputError(f"pairs must be at least 1, got {pairs}")
    files = gather_photos(photos)
    out = Path(out_dir)
    for f in files:
        if out.resolve() in f.resolve().parents:
            raise InputError(f"{out}: output folder holds input photo {f}; choose another")
    out = check_writable_dir(out)
    # empty folders hold nothing to lose (e.g. disparity/ of a run that stopped at once)
    existing = [e for e in os.listdir(out) if not e.startswith(".")
                and not ((out / e).is_dir() and not any((out / e).iterdir()))]
    if existing and not overwrite:
        raise InputError(f"{out}: output folder is not empty ({len(existing)} entries); pass "
                         "overwrite=True to replace the pairs there")
    report = SynthReport()
    usable: list[Path] = []
    for f in files:
        lossy = f.suffix.lower() in LOSSY_EXTENSIONS
        fmin = s.min_downscale if lossy else s.min_downscale_lossless
        hw = _photo_size(f)
        if _halved(hw, s):
            hw = (round(hw[0] / 2), round(hw[1] / 2))
        if _fits(hw, s.min_size, fmin, s):
            usable.append(f)
        else:
            report.photos_skipped.append(str(f))
    if not usable:
        raise InputError(f"every photo is too small for a {s.min_size[0]}x{s.min_size[1]} pair "
                         f"after shrinking by {s.min_downscale}")
    if write_disparity:  # only once every photo header was read: a bad photo leaves nothing
        check_writable_dir(out / "disparity")
    order = np.random.default_rng([seed, 0x9E37]).permutation(len(usable))
    assignment: dict[int, list[int]] = {}
    for i in range(pairs):
        assignment.setdefault(int(order[i % len(usable)]), []).append(i)
    width = max(4, len(str(pairs)))
    tasks = [(str(usable[k]), idx, seed, asdict(s), str(out), width, write_disparity, overwrite)
             for k, idx in sorted(assignment.items())]
    records: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=pairs, desc="pairs", unit="pair")
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_render_task, *t) for t in tasks]
            for fut in as_completed(futures):
                got = fut.result()
                records.extend(got)
                if bar is not None:
                    bar.update(len(got))
    else:
        for t in tasks:
            got = _render_task(*t)
            records.extend(got)
            if bar is not None:
                bar.update(len(got))
    if bar is not None:
        bar.close()
    records.sort(key=lambda r: r["index"])
    if overwrite:
        _remove_stale(out, pairs)
    report.pairs = len(records)
    report.photos_used = [str(usable[k]) for k in sorted(assignment)]
    for r in records:
        report.kinds[r["kind"]] = report.kinds.get(r["kind"], 0) + 1
    report.seconds = time.perf_counter() - t0
    manifest = {"format": "stereosr-synthetic-pairs/1", "seed": seed, "pairs": pairs,
                "settings": asdict(s), "photos_skipped": report.photos_skipped,
                "items": records}
    if command is not None:
        manifest["command"] = command
    atomic_write_bytes(out / "synth.json", json.dumps(manifest, indent=1).encode(),
                       overwrite=True)
    return report


def _remove_stale(out: Path, pairs: int) -> None:
    """Delete numbered pair files beyond ``pairs`` left by an earlier, larger run."""
    for entry in os.listdir(out):
        m = re.fullmatch(r"(\d+)_[LR]\.png", entry)
        if m and int(m.group(1)) > pairs:
            (out / entry).unlink()
    disp = out / "disparity"
    if disp.is_dir():
        for entry in os.listdir(disp):
            m = re.fullmatch(r"(\d+)\.png", entry)
            if m and int(m.group(1)) > pairs:
                (disp / entry).unlink()
