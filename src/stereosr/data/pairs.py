"""Find the stereo pairs of a data set folder, whatever its usual layout.

Layouts (``find_pairs(root, layout=...)``; ``"auto"`` tries them in this order):

============== ===================================================================
official_test  ``[<set>/]hr/<scene>/hr{0,1}.png`` + ``[<set>/]lr_x<s>/<scene>/lr{0,1}.png``
patches        ``<NNNNNN>/{hr0,hr1[,lr0,lr1]}.png`` (official training patches)
kitti          ``image_2/`` + ``image_3/`` (KITTI 2015) or ``colored_0/`` + ``colored_1/``
               (KITTI 2012), same file names; disparity from ``disp_occ_0/`` / ``disp_occ/``
subfolders     ``left/`` + ``right/`` with the same file names
flickr1024     ``<name>_L.png`` + ``<name>_R.png``; disparity ``disparity/<name>.png``
suffix         ``<name>_left.png`` + ``<name>_right.png`` (also ``-left``/``-right``)
middlebury     ``<scene>/im0.png`` + ``<scene>/im1.png`` [+ ``disp0.pfm``]
folders        ``<scene>/`` holding ``left/right``, ``l/r``, ``view1/view5``, ``im2/im6`` or
               ``lr0/lr1`` images
============== ===================================================================

In the scene-folder layouts (patches, middlebury, folders) ``root`` may also be one scene
folder itself. Image files may be PNG, JPEG, BMP, TIFF or WebP; hidden files are ignored.
Pairs come back sorted by name in natural order (``2`` before ``10``), never in directory
order. A pair with a missing view, views of different sizes (read from the image headers) or an
unreadable file is bad: ``on_error="raise"`` raises :class:`InputError` naming the file,
``on_error="skip"`` warns once per bad pair and leaves it out.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageReadError, InputError, StereoSRWarning
from ..io import image_size

__all__ = [
    "LAYOUTS",
    "BadPairWarning",
    "PairFiles",
    "PairList",
    "check_lr_size",
    "detect_layout",
    "find_pairs",
    "image_files",
    "natural_key",
    "read_disparity",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
_SKIP_HINT = "fix or remove it, or leave bad pairs out with on_error='skip'"


class BadPairWarning(StereoSRWarning):
    """A stereo pair was left out because a view is missing, unreadable or of another size."""


@dataclass(frozen=True)
class PairFiles:
    """The files of one stereo pair; LR views and disparity only where the layout has them.

    ``disparity`` is the left view's disparity map in HR pixels (Middlebury PFM or KITTI
    16-bit PNG; read it with :func:`read_disparity`).
    """

    name: str
    left: Path
    right: Path
    lr_left: Path | None = None
    lr_right: Path | None = None
    disparity: Path | None = None


class PairList(list[PairFiles]):
    """A list of :class:`PairFiles` that remembers the ``layout`` it was read with, and the
    pairs left out with ``on_error="skip"`` as ``skipped``: ``(name, reason)`` tuples."""

    def __init__(self, items: Iterable[PairFiles] = (), layout: str = "",
                 skipped: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(items)
        self.layout = layout
        self.skipped = list(skipped)


@dataclass
class _Candidate:
    """A pair as the layout sees it: expected paths (which may not exist)."""

    name: str
    left: Path
    right: Path
    lr_left: Path | None = None
    lr_right: Path | None = None
    disparity: Path | None = None
    problems: list[str] = field(default_factory=list)


def natural_key(text: str) -> tuple[str | int, ...]:
    """Sort key that orders digit runs by value: ``img2 < img10``; case-insensitive."""
    parts = re.split(r"(\d+)", text)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts))


def image_files(folder: Path) -> dict[str, list[Path]]:
    """Image files directly in ``folder`` grouped by stem (not hidden, known extension)."""
    out: dict[str, list[Path]] = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return out
    for e in entries:
        if e.name.startswith(".") or not e.is_file():
            continue
        p = Path(e.path)
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            out.setdefault(p.stem, []).append(p)
    for paths in out.values():
        paths.sort()
    return out


def _subdirs(folder: Path) -> list[Path]:
    try:
        dirs = [Path(e.path) for e in os.scandir(folder)
                if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        return []
    return sorted(dirs, key=lambda p: natural_key(p.name))


def _stem_lookup(files: dict[str, list[Path]], stem: str,
                 case_insensitive: bool = False) -> list[Path]:
    if not case_insensitive:
        return files.get(stem, [])
    return [p for s, ps in files.items() if s.lower() == stem.lower() for p in ps]


def _pick(paths: list[Path], expected: Path, cand: _Candidate) -> Path:
    """One file for a view; notes a problem when there are several."""
    if len(paths) > 1:
        cand.problems.append(f"{paths[0]}: several files for one view "
                             f"({', '.join(p.name for p in paths)})")
    return paths[0] if paths else expected


def _scene_candidate(d: Path, files: dict[str, list[Path]], left: str, right: str,
                     name: str | None = None, ignore_case: bool = False) -> _Candidate:
    """The pair of a scene folder ``d`` whose views are the files with stems ``left`` and
    ``right`` (``.png`` names where a view is missing, so the problem names the file)."""
    c = _Candidate(d.name if name is None else name, d / f"{left}.png", d / f"{right}.png")
    c.left = _pick(_stem_lookup(files, left, ignore_case), c.left, c)
    c.right = _pick(_stem_lookup(files, right, ignore_case), c.right, c)
    return c


def _child_dirs_with(root: Path, stems: tuple[str, ...], limit: int = 16) -> bool:
    """True when ``root`` or one of its first ``limit`` sub-folders holds all ``stems``."""
    folders = [root] + _subdirs(root)[:limit]
    for f in folders:
        files = image_files(f)
        if all(_stem_lookup(files, s) for s in stems):
            return True
    return False


def _scene_folders(root: Path, stems: tuple[str, ...]) -> list[Path]:
    """``[root]`` when root itself holds a scene, else its sub-folders."""
    files = image_files(root)
    if any(_stem_lookup(files, s) for s in stems):
        return [root]
    return _subdirs(root)


def _scenes_holding(root: Path, stems: tuple[str, ...],
                    any_of: tuple[str, ...]) -> Iterator[tuple[Path, dict[str, list[Path]]]]:
    """Scene folders of ``root`` (see :func:`_scene_folders`) with their image files, for
    those that hold at least one of the stems ``any_of``."""
    for d in _scene_folders(root, stems):
        files = image_files(d)
        if any(_stem_lookup(files, s) for s in any_of):
            yield d, files


# --- layouts -------------------------------------------------------------------------------


def _detect_official_test(root: Path) -> bool:
    if (root / "hr").is_dir():
        return True
    return any((d / "hr").is_dir() for d in _subdirs(root)[:32])


def _lr_dir(set_dir: Path, scale: int | None) -> Path | None:
    if scale is not None:
        d = set_dir / f"lr_x{scale}"
        return d if d.is_dir() else None
    found = [d for d in _subdirs(set_dir) if re.fullmatch(r"lr_x\d+", d.name)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        log.info("%s: several LR folders (%s); pass scale to choose one", set_dir,
                 ", ".join(d.name for d in found))
    return None


def _collect_official_test(root: Path, scale: int | None) -> list[_Candidate]:
    sets = [root] if (root / "hr").is_dir() else [d for d in _subdirs(root)
                                                  if (d / "hr").is_dir()]
    out = []
    for s in sets:
        lr_dir = _lr_dir(s, scale)
        prefix = "" if s == root else f"{s.name}/"
        for scene in _subdirs(s / "hr"):
            files = image_files(scene)
            c = _scene_candidate(scene, files, "hr0", "hr1", prefix + scene.name)
            if lr_dir is not None:
                lr_files = image_files(lr_dir / scene.name)
                c.lr_left = _pick(_stem_lookup(lr_files, "lr0"), lr_dir / scene.name / "lr0.png",
                                  c)
                c.lr_right = _pick(_stem_lookup(lr_files, "lr1"),
                                   lr_dir / scene.name / "lr1.png", c)
            out.append(c)
    return out


def _detect_patches(root: Path) -> bool:
    return _child_dirs_with(root, ("hr0", "hr1"))


def _collect_patches(root: Path, scale: int | None) -> list[_Candidate]:
    out = []
    for d, files in _scenes_holding(root, ("hr0", "hr1"), ("hr0", "hr1", "lr0", "lr1")):
        c = _scene_candidate(d, files, "hr0", "hr1")
        if _stem_lookup(files, "lr0") or _stem_lookup(files, "lr1"):
            c.lr_left = _pick(_stem_lookup(files, "lr0"), d / "lr0.png", c)
            c.lr_right = _pick(_stem_lookup(files, "lr1"), d / "lr1.png", c)
        out.append(c)
    return out


_KITTI_DIRS = (("image_2", "image_3", "disp_occ_0"), ("colored_0", "colored_1", "disp_occ"))


def _detect_kitti(root: Path) -> bool:
    return any((root / a).is_dir() and (root / b).is_dir() for a, b, _ in _KITTI_DIRS)


def _collect_by_name(name_dir_left: Path, name_dir_right: Path,
                     disp_dir: Path | None = None) -> list[_Candidate]:
    lf, rf = image_files(name_dir_left), image_files(name_dir_right)
    dispf = image_files(disp_dir) if disp_dir is not None and disp_dir.is_dir() else {}
    out = []
    for stem in set(lf) | set(rf):
        ext = (lf.get(stem) or rf.get(stem))[0].suffix  # type: ignore[index]
        c = _Candidate(stem, name_dir_left / f"{stem}{ext}", name_dir_right / f"{stem}{ext}")
        c.left = _pick(lf.get(stem, []), c.left, c)
        c.right = _pick(rf.get(stem, []), c.right, c)
        if stem in dispf:
            c.disparity = dispf[stem][0]
        out.append(c)
    return out


def _collect_kitti(root: Path, scale: int | None) -> list[_Candidate]:
    for a, b, disp in _KITTI_DIRS:
        if (root / a).is_dir() and (root / b).is_dir():
            return _collect_by_name(root / a, root / b, root / disp)
    return []


def _lr_named_dirs(root: Path) -> tuple[Path, Path] | None:
    dirs = {d.name.lower(): d for d in _subdirs(root)}
    if "left" in dirs and "right" in dirs:
        return dirs["left"], dirs["right"]
    return None


def _detect_subfolders(root: Path) -> bool:
    return _lr_named_dirs(root) is not None


def _collect_subfolders(root: Path, scale: int | None) -> list[_Candidate]:
    dirs = _lr_named_dirs(root)
    return _collect_by_name(*dirs) if dirs else []


def _collect_suffix_pairs(root: Path, pattern: str, left_tag: Callable[[str], bool],
                          disp_dir: Path | None) -> list[_Candidate]:
    files = image_files(root)
    dispf = image_files(disp_dir) if disp_dir is not None and disp_dir.is_dir() else {}
    views: dict[str, dict[str, list[Path]]] = {}
    for stem, paths in files.items():
        m = re.fullmatch(pattern, stem)
        if m:
            side = "left" if left_tag(m.group(2)) else "right"
            views.setdefault(m.group(1), {}).setdefault(side, []).extend(paths)
    out = []
    for name, sides in views.items():
        some = (sides.get("left") or sides.get("right"))[0]  # type: ignore[index]
        lname, rname = _partner_names(some, pattern, left_tag)
        c = _Candidate(name, root / lname, root / rname)
        c.left = _pick(sides.get("left", []), c.left, c)
        c.right = _pick(sides.get("right", []), c.right, c)
        if name in dispf:
            c.disparity = dispf[name][0]
        out.append(c)
    return out


def _partner_names(path: Path, pattern: str, left_tag: Callable[[str], bool]) -> tuple[str, str]:
    """(left file name, right file name) of the pair ``path`` belongs to."""
    m = re.fullmatch(pattern, path.stem)
    assert m is not None
    base, tag, ext = m.group(1), m.group(2), path.suffix
    sep = tag[0]
    body = tag[1:]
    if body in ("L", "R"):
        return f"{base}{sep}L{ext}", f"{base}{sep}R{ext}"
    case = str.upper if body.isupper() else (str.capitalize if body[0].isupper() else str.lower)
    return f"{base}{sep}{case('left')}{ext}", f"{base}{sep}{case('right')}{ext}"


_FLICKR_PATTERN = r"(.+)(_[LR])"
_SUFFIX_PATTERN = r"(.+)([_-](?i:left|right))"


def _detect_flickr1024(root: Path) -> bool:
    return any(re.fullmatch(_FLICKR_PATTERN, s) for s in image_files(root))


def _collect_flickr1024(root: Path, scale: int | None) -> list[_Candidate]:
    return _collect_suffix_pairs(root, _FLICKR_PATTERN, lambda t: t.endswith("L"),
                                 root / "disparity")


def _detect_suffix(root: Path) -> bool:
    return any(re.fullmatch(_SUFFIX_PATTERN, s) for s in image_files(root))


def _collect_suffix(root: Path, scale: int | None) -> list[_Candidate]:
    return _collect_suffix_pairs(root, _SUFFIX_PATTERN, lambda t: t[1:].lower() == "left",
                                 root / "disparity")


def _detect_middlebury(root: Path) -> bool:
    return _child_dirs_with(root, ("im0", "im1"))


def _collect_middlebury(root: Path, scale: int | None) -> list[_Candidate]:
    out = []
    for d, files in _scenes_holding(root, ("im0", "im1"), ("im0", "im1")):
        c = _scene_candidate(d, files, "im0", "im1")
        for disp in ("disp0.pfm", "disp0GT.pfm"):
            if (d / disp).is_file():
                c.disparity = d / disp
                break
        out.append(c)
    return out


_FOLDER_NAMES = (("left", "right"), ("l", "r"), ("view1", "view5"), ("im2", "im6"),
                 ("lr0", "lr1"))


def _folder_pair_names(files: dict[str, list[Path]]) -> tuple[str, str] | None:
    lower = {s.lower() for s in files}
    for a, b in _FOLDER_NAMES:
        if a in lower or b in lower:
            return a, b
    return None


def _detect_folders(root: Path) -> bool:
    folders = [root] + _subdirs(root)[:16]
    for f in folders:
        files = image_files(f)
        names = _folder_pair_names(files)
        if names and all(_stem_lookup(files, s, True) for s in names):
            return True
    return False


def _collect_folders(root: Path, scale: int | None) -> list[_Candidate]:
    root_names = _folder_pair_names(image_files(root))
    dirs = [root] if root_names else _subdirs(root)
    out = []
    for d in dirs:
        files = image_files(d)
        names = _folder_pair_names(files)
        if names is None:
            continue
        a, b = names
        c = _scene_candidate(d, files, a, b, ignore_case=True)
        lower = {s.lower() for s in files}
        present = [f"{x}/{y}" for x, y in _FOLDER_NAMES if x in lower or y in lower]
        if len(present) > 1:  # one would be read and the other silently left out
            c.problems.append(f"{d}: holds views of several pairs ({', '.join(present)}); "
                              "keep one pair per scene folder")
        out.append(c)
    return out


_Collector = Callable[[Path, "int | None"], list[_Candidate]]

#: layout name -> (detector, collector), in the order ``"auto"`` tries them
LAYOUTS: dict[str, tuple[Callable[[Path], bool], _Collector]] = {
    "official_test": (_detect_official_test, _collect_official_test),
    "patches": (_detect_patches, _collect_patches),
    "kitti": (_detect_kitti, _collect_kitti),
    "subfolders": (_detect_subfolders, _collect_subfolders),
    "flickr1024": (_detect_flickr1024, _collect_flickr1024),
    "suffix": (_detect_suffix, _collect_suffix),
    "middlebury": (_detect_middlebury, _collect_middlebury),
    "folders": (_detect_folders, _collect_folders),
}


def detect_layout(root: str | os.PathLike[str]) -> str:
    """Name of the first layout in :data:`LAYOUTS` that ``root`` looks like."""
    r = _check_root(root)
    for name, (detect, _) in LAYOUTS.items():
        if detect(r):
            return name
    raise InputError(f"{r}: no stereo pairs found; expected one of the layouts "
                     f"{', '.join(LAYOUTS)} (see docs/data.md)")


def _check_root(root: str | os.PathLike[str]) -> Path:
    r = Path(root)
    if not r.exists():
        raise InputError(f"{r}: folder not found")
    if not r.is_dir():
        raise InputError(f"{r}: is a file, expected a folder of stereo pairs")
    return r


# --- checks --------------------------------------------------------------------------------


def check_lr_size(name: str, lr_path: str | os.PathLike[str], lr_size: tuple[int, int],
                  hr_size: tuple[int, int], scale: int) -> None:
    """Check that an LR view of ``lr_size`` (H, W) belongs to an HR view of ``hr_size`` at
    ``scale``: LR = HR cropped to a multiple of ``scale`` (bottom/right), divided by ``scale``.

    Raises:
        InputError: naming the sizes and, when the views look made for another scale, that
            scale; otherwise the LR size expected.
    """
    (lh, lw), (h, w) = lr_size, hr_size
    eh, ew = h // scale, w // scale
    if (lh, lw) == (eh, ew):
        return
    ratio = w / max(1, lw)
    near = round(ratio)
    if near >= 1 and near != scale and abs(ratio - near) < 0.1 * near:
        raise InputError(f"pair {name}: LR view {lr_path} is {lw}x{lh}, about x{near} smaller "
                         f"than HR {w}x{h}, not x{scale}; use a x{near} model (scale {near}) or "
                         f"data made for x{scale}")
    raise InputError(f"pair {name}: LR view {lr_path} is {lw}x{lh} but HR {w}x{h} at x{scale} "
                     f"needs LR {ew}x{eh} (HR cropped to {ew * scale}x{eh * scale}, the nearest "
                     f"multiple of {scale}, then divided by {scale}); make the LR views from the "
                     "cropped HR views")


def _size_or_problem(path: Path, problems: list[str]) -> tuple[int, int] | None:
    try:
        return image_size(path)
    except ImageReadError as exc:
        problems.append(str(exc))
    return None


def _check(c: _Candidate, check_sizes: bool) -> list[str]:
    problems = list(c.problems)
    pairs = [(c.left, c.right)]
    if c.lr_left is not None or c.lr_right is not None:
        pairs.append((c.lr_left or c.left.with_name("lr0.png"),
                      c.lr_right or c.right.with_name("lr1.png")))
    for i, (a, b) in enumerate(pairs):
        missing = [p for p in (a, b) if not p.is_file()]
        if len(missing) == 2:  # only LR views can both be missing: the HR views were found
            problems.append(f"{a}, {b}: files not found (the pair's {'LR' if i else 'HR'} "
                            "views are missing)")
            continue
        if missing:
            problems.append(f"{missing[0]}: file not found (the other view of the pair exists)")
            continue
        if not check_sizes:
            continue
        sa, sb = _size_or_problem(a, problems), _size_or_problem(b, problems)
        if sa is not None and sb is not None and sa != sb:
            problems.append(f"{b}: is {sb[1]}x{sb[0]} but {a.name} is {sa[1]}x{sa[0]}; "
                            "the views of a pair must have the same size")
    return problems


def _warn_other_layouts(root: Path, layout: str, candidates: list[_Candidate],
                        scale: int | None) -> None:
    """Warn when ``root`` also holds pairs of another layout than the detected one: they would
    be left out without a word (``0001_L.png`` pairs beside ``x_left.png`` ones, a scene
    folder of ``left/right`` images among Middlebury scenes)."""
    used = {os.path.abspath(p) for c in candidates
            for p in (c.left, c.right, c.lr_left, c.lr_right) if p is not None}
    for other, (detect, collect) in LAYOUTS.items():
        if other == layout or (layout, other) == ("patches", "folders"):
            continue  # patch folders also look like lr0/lr1 scene folders: the same files
        if not detect(root):
            continue
        left_out = [c for c in sorted(collect(root, scale), key=lambda c: natural_key(c.name))
                    if c.left.is_file() and c.right.is_file()
                    and not {os.path.abspath(c.left), os.path.abspath(c.right)} & used]
        if left_out:
            names = ", ".join(c.name for c in left_out[:3]) + (" ..." if len(left_out) > 3
                                                               else "")
            warnings.warn(f"{root}: read as layout {layout!r}; {len(left_out)} pair(s) of "
                          f"layout {other!r} there are left out ({names}); give one layout "
                          "per folder, or the layout to read", StereoSRWarning, stacklevel=3)
    if layout in ("flickr1024", "suffix"):  # flat layouts: images in sub-folders are not read
        nested = [d.name for d in _subdirs(root) if d.name != "disparity" and image_files(d)]
        if nested:
            names = ", ".join(nested[:3]) + (" ..." if len(nested) > 3 else "")
            warnings.warn(f"{root}: read as layout {layout!r}, which takes the images directly "
                          f"in it; the images in its sub-folder(s) {names} are left out (give "
                          "each folder on its own)", StereoSRWarning, stacklevel=3)


def find_pairs(root: str | os.PathLike[str], layout: str = "auto", on_error: str = "raise",
               scale: int | None = None, check_sizes: bool = True) -> PairList:
    """All stereo pairs under ``root``, sorted by name (natural order).

    Args:
        root: the data set folder.
        layout: one of :data:`LAYOUTS` or ``"auto"`` (the first layout that matches; logged
            and stored as ``result.layout``).
        on_error: ``"raise"`` (first bad pair raises :class:`InputError` naming the file) or
            ``"skip"`` (a :class:`BadPairWarning` per bad pair, which is left out).
        scale: for ``official_test``, which ``lr_x<scale>`` folder gives the LR views (when
            ``None``, the only one present; none when there are several).
        check_sizes: read image headers to check that the views of a pair have equal sizes
            and can be opened (cheap; turn off only for very large patch folders).

    Returns:
        A :class:`PairList` (a list of :class:`PairFiles` with a ``layout`` attribute).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    r = _check_root(root)
    detected = layout == "auto"
    if detected:
        layout = detect_layout(r)
        log.info("%s: detected layout %r", r, layout)
    elif layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; choose auto or one of {', '.join(LAYOUTS)}")
    candidates = sorted(LAYOUTS[layout][1](r, scale), key=lambda c: natural_key(c.name))
    if detected:
        _warn_other_layouts(r, layout, candidates, scale)
    out = PairList(layout=layout)
    for c in candidates:
        problems = _check(c, check_sizes)
        if problems:
            if on_error == "raise":
                raise InputError(f"{problems[0]}; {_SKIP_HINT}")
            warnings.warn(f"skipping pair {c.name!r}: {'; '.join(problems)}", BadPairWarning,
                          stacklevel=2)
            out.skipped.append((c.name, "; ".join(problems)))
            continue
        out.append(PairFiles(c.name, c.left, c.right, c.lr_left, c.lr_right, c.disparity))
    if not out:
        what = "no usable stereo pairs" if candidates else "no stereo pairs"
        raise InputError(f"{r}: {what} found in layout {layout!r}; see docs/data.md for the "
                         "layouts stereosr reads")
    return out


# --- disparity maps ------------------------------------------------------------------------


def _read_pfm(path: Path) -> np.ndarray:
    with open(path, "rb") as fh:
        header = fh.readline().strip()
        if header not in (b"Pf", b"PF"):
            raise InputError(f"{path}: not a PFM file")
        dims = fh.readline().split()
        while not dims:
            dims = fh.readline().split()
        try:
            w, h = int(dims[0]), int(dims[1])
            scale = float(fh.readline().strip())
        except (ValueError, IndexError):
            raise InputError(f"{path}: malformed PFM header") from None
        channels = 3 if header == b"PF" else 1
        data = np.frombuffer(fh.read(), dtype="<f4" if scale < 0 else ">f4")
    if data.size < w * h * channels:
        raise InputError(f"{path}: PFM data is truncated")
    arr = data[: w * h * channels].reshape(h, w, channels)[::-1, :, 0]  # rows stored bottom-up
    return np.ascontiguousarray(arr, dtype=np.float32)


def read_disparity(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a disparity map as (H, W) float32 in pixels; unknown disparities are ``inf``.

    Middlebury ``.pfm`` (``inf`` kept), single-channel floating-point TIFF (pixels; NaN, inf
    and values <= 0 unknown) and KITTI-style 16-bit ``.png``/``.tif`` (value / 256, 0 means
    unknown) are read.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: disparity file not found")
    if p.suffix.lower() == ".pfm":
        return _read_pfm(p)
    from ..io import image_size, read_image

    if p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        image_size(p)  # the pixel limit, from the header
        try:
            with tifffile.TiffFile(p) as tif:
                page = tif.pages[0]
                floating = np.issubdtype(np.dtype(page.dtype), np.floating)
                arr = page.asarray() if floating else None
        except Exception as exc:  # noqa: BLE001  (tifffile: bad IFD, short data)
            raise InputError(f"{p}: cannot read the TIFF disparity map ({exc})") from None
        if arr is not None:
            if arr.ndim != 2:
                raise InputError(f"{p}: a floating-point disparity map must have one channel, "
                                 f"got shape {arr.shape}")
            d = arr.astype(np.float32)
            d[~np.isfinite(d) | (d <= 0)] = np.inf
            return d
    raw = read_image(p)
    if raw.dtype != np.uint16 or raw.shape[2] != 1:
        raise InputError(f"{p}: expected a disparity map: 16-bit single-channel PNG/TIFF "
                         "(KITTI format: value / 256 pixels, 0 = unknown), floating-point TIFF "
                         "or PFM (pixels)")
    d = raw[..., 0].astype(np.float32) / 256.0
    d[raw[..., 0] == 0] = np.inf
    return d
