#!/usr/bin/env python3
"""Build the synthetic training and validation sets of the default model.

Photos: the Debian wallpaper packages that ``scripts/install_photos.sh`` installs (only the
real photographs among them), the photos it fetches into ``data/photos`` (one folder per
package, licence beside them; see scripts/fetch_photos.py), scikit-image's colour sample photos,
plus matplotlib's grace_hopper.jpg when matplotlib is installed. A fixed set of photos is held
out for validation, so no photo contributes to both sets. Photos of 3500 px or more on their
long side (4K wallpapers) are halved first, and each pair is drawn until its left view is
textured (mean gradient magnitude >= 0.02, up to 8 draws). With ``--pillow-sdist``, the real
stereo pairs of Pillow's test MPOs are rectified into ``data/val_real`` and added to
``data/val_hr`` (scripts/build_real_val.py). No Middlebury pair (scikit-image's Motorcycle,
mvtb-data's rocks2) is ever used: the builder refuses such files.

With ``--photos DIR --photos-only`` the pairs come from DIR's photos alone (e.g. the
sub-megapixel ones of ``fetch_photos.py --small``), and ``--val-pairs 0`` builds no validation
set. Each ``synth.json`` records the command that renders its folder again (``command``).

    python scripts/build_training_set.py --out data --pillow-sdist pillow-13.0.0.tar.gz
    python scripts/build_training_set.py --out data/extra_small --photos data/photos_small \
        --photos-only --seed 3000 --train-pairs 480 --val-pairs 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stereosr.data.pairs import natural_key
from stereosr.data.training_set import SynthSettings, build_synthetic_set, check_allowed
from stereosr.errors import StereoSRError

MATE_NATURE = Path("/usr/share/backgrounds/mate/nature")
LOMIRI = Path("/usr/share/backgrounds")
# lomiri-wallpapers images that are renders or abstract textures, not photographs
LOMIRI_NOT_PHOTOS = {"umang_by_Abhishek_Mudgal.jpg", "analogpattern_by_Peter_Nerlich.jpg"}
PLASMA = Path("/usr/share/wallpapers")
PLASMA_PHOTOS = ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
                 "FallenLeaf", "Grey", "OneStandsOut", "Path", "summer_1am"]
SKIMAGE_PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"]
# held out for validation: one photo from each of the first sources, and two man-made scenes
VAL_NAMES = {"LadyBird.jpg", "life_by_Aitzol_Berasategi.jpg", "Path", "coffee.png",
             "church.png", "building2-3.png"}
MORE_PHOTOS = Path("data/photos")  # scripts/fetch_photos.py writes here
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def _largest(folder: Path) -> Path | None:
    """The largest image of a plasma wallpaper theme (all sizes are copies of one photo)."""
    from PIL import Image

    best, best_px = None, -1
    for f in sorted(folder.glob("*"), key=lambda p: natural_key(p.name)):
        if f.is_symlink() or f.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        with Image.open(f) as im:
            px = im.size[0] * im.size[1]
        if px > best_px:
            best, best_px = f, px
    return best


def _system_photos() -> list[tuple[str, Path]]:
    """(key, path) of the installed wallpapers and the photos of scikit-image and matplotlib."""
    found: list[tuple[str, Path]] = []
    if MATE_NATURE.is_dir():
        found += [(f.name, f) for f in sorted(MATE_NATURE.glob("*.jpg"))]
    if LOMIRI.is_dir():
        found += [(f.name, f) for f in sorted(LOMIRI.glob("*.jpg"))
                  if f.name not in LOMIRI_NOT_PHOTOS]
    for theme in PLASMA_PHOTOS:
        img = _largest(PLASMA / theme / "contents" / "images")
        if img is not None:
            found.append((theme, img))
    try:
        import skimage

        data = Path(skimage.__file__).parent / "data"
        found += [(n, data / n) for n in SKIMAGE_PHOTOS if (data / n).is_file()]
    except ImportError:
        pass
    try:
        import matplotlib

        grace = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        if grace.is_file():
            found.append((grace.name, grace))
    except ImportError:
        pass
    return found


def collect_photos(more: Path = MORE_PHOTOS, only_more: bool = False) -> list[tuple[str, Path]]:
    """(key, path) of every available photo; key is what VAL_NAMES matches. With
    ``only_more``, only the photos of ``more`` (scripts/fetch_photos.py's folder)."""
    found: list[tuple[str, Path]] = []
    if more.is_dir():
        found += [(f.name, f) for f in sorted(more.glob("*/*"))
                  if f.suffix.lower() in PHOTO_EXTENSIONS]
    if not only_more:
        found += _system_photos()
    for _, p in found:
        check_allowed(p)
    return found


def _size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def rebuild_command(args: argparse.Namespace) -> str:
    """The command line that renders the same pairs again (options left at their defaults and
    the ones that do not change the pairs, such as --workers, are left out)."""
    words = ["python scripts/build_training_set.py", "--out", Path(args.out).as_posix()]
    if Path(args.photos) != MORE_PHOTOS:
        words += ["--photos", Path(args.photos).as_posix()]
    if args.photos_only:
        words.append("--photos-only")
    for flag, value, default in (("--seed", args.seed, 0),
                                 ("--train-pairs", args.train_pairs, 960),
                                 ("--val-pairs", args.val_pairs, 40)):
        if value != default:
            words += [flag, str(value)]
    if tuple(args.size) != (400, 800):
        words += ["--size", f"{args.size[0]}x{args.size[1]}"]
    if args.pillow_sdist is not None:
        words += ["--pillow-sdist", "PILLOW_SDIST"]
    return " ".join(words)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data"),
                    help="parent folder of train_hr/ and val_hr/ (default data)")
    ap.add_argument("--train-pairs", type=int, default=960)
    ap.add_argument("--val-pairs", type=int, default=40)
    ap.add_argument("--size", type=_size, default=(400, 800), help="largest pair HxW")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--photos", type=Path, default=MORE_PHOTOS,
                    help="folder of scripts/fetch_photos.py (default data/photos)")
    ap.add_argument("--photos-only", action="store_true",
                    help="use only the photos of --photos (not the system wallpapers, "
                    "scikit-image's or matplotlib's), e.g. the sub-megapixel photos of "
                    "`fetch_photos.py --small`; with --val-pairs 0, no validation set")
    ap.add_argument("--pillow-sdist", type=Path, default=None,
                    help="Pillow source distribution: add its rectified real stereo pairs to "
                    "the validation set")
    args = ap.parse_args()

    def fail(message: str) -> int:
        print(f"build_training_set: error: {message}", file=sys.stderr)
        return 2

    if args.val_pairs < 0 or args.train_pairs < 1:
        return fail("--train-pairs must be 1 or more and --val-pairs 0 or more")
    if args.pillow_sdist is not None and args.val_pairs == 0:
        return fail("--pillow-sdist adds real pairs to the validation set, which --val-pairs 0 "
                    "leaves out; drop one of them")
    if args.pillow_sdist is not None and not args.pillow_sdist.is_file():
        return fail(f"{args.pillow_sdist}: no such file; download it with `pip download "
                    "--no-deps --no-binary :all: pillow==13.0.0`")
    photos = collect_photos(args.photos, only_more=args.photos_only)
    train = [p for k, p in photos if k not in VAL_NAMES]
    val = [p for k, p in photos if k in VAL_NAMES]
    if not train or (args.val_pairs > 0 and not val):
        what = "training" if not train else "validation"
        where = (f"in {args.photos}/*/ (one folder per package, as scripts/fetch_photos.py "
                 "writes them)" if args.photos_only else "")
        hint = ("pass --val-pairs 0 for a set without validation pairs" if train else
                "fetch them with scripts/fetch_photos.py" if args.photos_only else
                "run scripts/install_photos.sh first")
        return fail(f"no {what} photos found{' ' + where if where else ''}; {hint}")
    print(f"{len(train)} training photos, {len(val)} validation photos "
          f"({', '.join(p.name for p in val) or 'none'})")
    sets = [("val_hr", val, args.val_pairs, args.seed + 1)] if args.val_pairs else []
    sets.append(("train_hr", train, args.train_pairs, args.seed))
    try:
        settings = SynthSettings(size=args.size, halve_above=3500, min_texture=0.02)
        for name, files, n, seed in sets:
            rep = build_synthetic_set(files, args.out / name, n, seed=seed, settings=settings,
                                      workers=args.workers, overwrite=args.overwrite,
                                      progress=sys.stderr.isatty(),
                                      command=rebuild_command(args))
            kinds = ", ".join(f"{k} {c}" for k, c in sorted(rep.kinds.items()))
            print(f"{args.out / name}: {rep.pairs} pairs from {len(rep.photos_used)} photos in "
                  f"{rep.seconds:.0f} s ({kinds}); skipped photos: "
                  f"{', '.join(Path(p).name for p in rep.photos_skipped) or 'none'}")
    except StereoSRError as exc:
        print(f"build_training_set: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.pillow_sdist is not None:
        import shutil
        import subprocess

        real = args.out / "val_real"
        subprocess.run([sys.executable, str(Path(__file__).with_name("build_real_val.py")),
                        str(args.pillow_sdist), str(real)], check=True)
        for f in sorted(real.glob("real-*_[LR].png")):
            shutil.copyfile(f, args.out / "val_hr" / f.name)
        print(f"{args.out / 'val_hr'}: plus the real pairs of {real}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
