#!/usr/bin/env python3
"""Real stereo validation pairs from the three stereo MPO files of Pillow's source distribution.

- ``fujifilm.mpo`` (3648x2736, FinePix REAL 3D W3): near-parallel but not rectified. Both
  views are halved (box filter), then the vertical offset of the right view is measured at
  ~450 textured 40x40 patches (normalised cross-correlation over +-14 rows and -60..+30 columns,
  sub-pixel by a parabola) and fitted as a plane ``dy = a + b x + c y`` (a small roll and tilt
  between the cameras), which is then removed by resampling the right view (cubic splines).
- ``sugarshack.mpo`` and ``frozenpond.mpo`` (640x480): a nearly constant vertical shift of
  ~2 px, measured with :func:`stereosr.stereo.estimate_vertical_offset` and removed the same way.

Rows that the shift leaves without data are dropped and both views are cropped to multiples of
12 (so x2, x3 and x4 LR views need no cropping). Output (Flickr1024 layout)::

    OUT/real-fujifilm_L.png, real-fujifilm_R.png, ...   8-bit RGB
    OUT/real_pairs.json                                  source, offsets, residuals
    OUT/LICENSE-Pillow.txt                               the MIT-CMU licence of the files

    pip download --no-deps --no-binary :all: pillow==13.0.0 -d /tmp/pillow
    python scripts/build_real_val.py /tmp/pillow/pillow-13.0.0.tar.gz data/val_real
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from stereosr.stereo import estimate_vertical_offset

NAMES = ("fujifilm", "sugarshack", "frozenpond")


def patch_offsets(left: np.ndarray, right: np.ndarray, size: int = 40, step: int = 24,
                  rows: int = 14, dmax: int = 120, dmin: int = 120) -> np.ndarray:
    """(x, y, dy) at the centres of textured patches: the right view's row ``y + dy`` shows
    the left patch's centre row (normalised cross-correlation, scikit-image).

    The match is searched ``dmax`` columns to the left and ``dmin`` to the right of the patch.
    fujifilm.mpo's views converge, so its half-size disparities run both ways, past 60 px: a
    narrower search (it once was -30..60) matches only the patches of a few depths, and the
    plane fitted to them leaves most of the pair about 1 px off vertically."""
    from skimage.feature import match_template

    lg, rg = left.mean(axis=2), right.mean(axis=2)
    h, w = lg.shape
    out = []
    for y in range(rows, h - size - rows, step):
        for x in range(dmax, w - size - dmin, step):
            patch = lg[y:y + size, x:x + size]
            if patch.std() < 0.02:  # flat: no reliable match
                continue
            c = match_template(rg[y - rows:y + size + rows, x - dmax:x + size + dmin], patch)
            iy, ix = np.unravel_index(int(np.argmax(c)), c.shape)
            if c[iy, ix] < 0.8 or iy in (0, c.shape[0] - 1) or ix in (0, c.shape[1] - 1):
                continue
            y0, y1, y2 = c[iy - 1, ix], c[iy, ix], c[iy + 1, ix]
            out.append((x + size / 2, y + size / 2, iy - rows + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)))
    return np.array(out)


def fit_plane(pts: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares ``dy = a + b x + c y`` with two rounds of 3-sigma outlier rejection;
    returns (a, b, c) and the residual standard deviation."""
    good = pts
    for _ in range(3):
        design = np.c_[np.ones(len(good)), good[:, 0], good[:, 1]]
        coef, *_ = np.linalg.lstsq(design, good[:, 2], rcond=None)
        res = good[:, 2] - design @ coef
        keep = np.abs(res) <= max(3 * res.std(), 0.3)
        if keep.all():
            break
        good = good[keep]
    return coef, float(res.std())


def shift_rows(right: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """right'(y, x) = right(y + dy(y, x), x), cubic splines (SciPy)."""
    from scipy.ndimage import map_coordinates

    h, w = right.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([map_coordinates(right[..., c], [yy + dy, xx], order=3, mode="nearest")
                     for c in range(right.shape[2])], axis=-1)


def rectify(name: str, left: Image.Image, right: Image.Image) -> tuple[np.ndarray, np.ndarray,
                                                                     dict[str, object]]:
    if name == "fujifilm":
        left, right = left.reduce(2), right.reduce(2)
    lf = np.asarray(left, dtype=np.float64) / 255.0
    rf = np.asarray(right, dtype=np.float64) / 255.0
    h, w = lf.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if name == "fujifilm":
        # Fit, resample, and fit what is left again: the outlier rejection of one fit leaves
        # the bulk of the patches ~0.3 px off; the second round takes that out.
        coef = np.zeros(3)
        for _ in range(2):
            dy = coef[0] + coef[1] * xx + coef[2] * yy
            more, _ = fit_plane(patch_offsets(lf, shift_rows(rf, dy)))
            coef = coef + more
        dy = coef[0] + coef[1] * xx + coef[2] * yy
        info: dict[str, object] = {"model": "dy = a + b x + c y (half size)",
                                   "a_b_c": [round(float(v), 6) for v in coef]}
    else:
        d = estimate_vertical_offset(lf, rf)
        dy = np.full((h, w), d)
        info = {"model": "constant dy", "dy": round(d, 3)}
    rr = np.clip(shift_rows(rf, dy), 0.0, 1.0)
    top = int(np.ceil(max(0.0, float(dy.max())))) + 2  # rows sampled beyond the top/bottom
    bottom = int(np.ceil(max(0.0, -float(dy.min())))) + 2
    lf, rr = lf[top:h - bottom], rr[top:h - bottom]
    hh, ww = (lf.shape[0] // 12) * 12, (lf.shape[1] // 12) * 12
    lf, rr = lf[:hh, :ww], rr[:hh, :ww]
    if name == "fujifilm":
        after = patch_offsets(lf, rr)
        _, resid = fit_plane(after)
        info["residual_dy_std_px"] = round(resid, 3)
        info["residual_dy_median_px"] = round(float(np.median(after[:, 2])), 3)
    else:
        info["residual_dy_px"] = round(estimate_vertical_offset(lf, rr), 3)
    info["size_hw"] = [hh, ww]
    return lf, rr, info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sdist", type=Path, help="Pillow source distribution (.tar.gz)")
    ap.add_argument("out", type=Path, help="output folder")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"source": args.sdist.name}
    with tarfile.open(args.sdist) as tar:
        members = {Path(m.name).name: m for m in tar.getmembers()}
        lic = members.get("LICENSE")
        if lic is not None:
            (args.out / "LICENSE-Pillow.txt").write_bytes(tar.extractfile(lic).read())  # type: ignore[union-attr]
        for name in NAMES:
            data = tar.extractfile(members[f"{name}.mpo"]).read()  # type: ignore[union-attr]
            with Image.open(io.BytesIO(data)) as im:
                im.seek(0)
                left = im.convert("RGB")
                im.seek(1)
                right = im.convert("RGB")
            lf, rr, info = rectify(name, left, right)
            for view, arr in (("L", lf), ("R", rr)):
                Image.fromarray(np.clip(np.round(arr * 255), 0, 255).astype(np.uint8)).save(
                    args.out / f"real-{name}_{view}.png")
            report[name] = info
            print(name, info)
    (args.out / "real_pairs.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
