"""Regenerate tests/data/octave_imresize.npz: GNU Octave references for MATLAB bicubic imresize.

Needs ``octave-cli`` with the image package (Debian: ``apt-get install octave octave-image``),
scipy and scikit-image. Run from the repository root::

    python tests/data/make_octave_refs.py

Stored per case ``<name>`` (inputs are small crops of scikit-image sample photos, plus noise):

- ``<name>_in``: the uint8 input, (H, W) or (H, W, 3); the float input is ``in / 255`` (double);
- ``<name>_double``: ``imresize(in / 255, scale)`` computed by Octave in double precision;
- ``<name>_uint8``: MATLAB's uint8 result, built in Octave the way MATLAB computes it: one
  dimension at a time (rows first when both scales are equal), in double precision, converted
  back to uint8 (round half away from zero, saturate) after each pass;
- ``<name>_octave_uint8``: Octave's own ``imresize`` of the uint8 image. It differs from MATLAB:
  it rounds and saturates once at the end instead of after each pass (1 grey level apart where
  the intermediate rounding matters, more where the first pass overshoots 0..255);
- ``names`` / ``scales`` / ``methods``: each case's (rows, columns) scale factors and MATLAB
  method (``bicubic`` unless the name says ``bilinear`` or ``nearest``).

Octave's imresize does not normalise its kernel weights; for the integer factors used here
(x1/2, x1/3, x1/4, x2, x4) they sum to 1 exactly, so it agrees with MATLAB. Its 'nearest' clamps
sample points that fall past the last pixel, where MATLAB mirrors them like the other kernels;
the 'nearest' cases avoid such points.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("octave_imresize.npz")

OCTAVE_SCRIPT = r"""
pkg load image;
S = load('-v7', '{inp}');
names = fieldnames(S);
R = struct();
for i = 1:numel(names)
  key = names{{i}};
  if numel(key) < 4 || ~strcmp(key(end-2:end), '_in'), continue; end
  base = key(1:end-3);
  A = S.(key);
  s = S.([base '_scale']);  % [scale_rows scale_cols]
  m = S.([base '_method']);
  R.([base '_double']) = imresize(double(A) / 255, 'Scale', s, 'Method', m);
  if s(1) <= s(2)  % MATLAB resizes along the dimension with the smaller scale first
    B = uint8(imresize(double(A), 'Scale', [s(1) 1], 'Method', m));
    B = uint8(imresize(double(B), 'Scale', [1 s(2)], 'Method', m));
  else
    B = uint8(imresize(double(A), 'Scale', [1 s(2)], 'Method', m));
    B = uint8(imresize(double(B), 'Scale', [s(1) 1], 'Method', m));
  end
  R.([base '_uint8']) = B;
  R.([base '_octave_uint8']) = imresize(A, 'Scale', s, 'Method', m);
end
save('-v7', '{out}', '-struct', 'R');
"""


def make_inputs() -> dict[str, tuple[np.ndarray, tuple[float, float], str]]:
    """Case name -> (uint8 input, (scale_rows, scale_cols), method). Odd sizes, grey/RGB."""
    from skimage import data

    astro = data.astronaut()
    camera = data.camera()
    rng = np.random.default_rng(20230417)
    noise = rng.integers(0, 256, size=(30, 45), dtype=np.uint8)
    rgb_big = astro[140:181, 200:259]          # 41 x 59 x 3, face and hair edges
    grey_big = camera[90:127, 230:280]         # 37 x 50, high-contrast edges
    rgb_small = astro[180:189, 250:261]        # 9 x 11 x 3
    grey_small = camera[100:112, 240:249]      # 12 x 9
    cases: dict[str, tuple[np.ndarray, tuple[float, float], str]] = {}
    for tag, s in (("half", 0.5), ("third", 1 / 3), ("quarter", 0.25)):
        cases[f"rgb_{tag}"] = (rgb_big, (s, s), "bicubic")
        cases[f"grey_{tag}"] = (grey_big, (s, s), "bicubic")
        cases[f"noise_{tag}"] = (noise, (s, s), "bicubic")
    for tag, s in (("x2", 2.0), ("x4", 4.0)):
        cases[f"rgb_{tag}"] = (rgb_small, (s, s), "bicubic")
        cases[f"grey_{tag}"] = (grey_small, (s, s), "bicubic")
        cases[f"noise_{tag}"] = (noise[:7, :10], (s, s), "bicubic")
    # unequal factors: MATLAB resizes the dimension with the smaller factor first
    cases["rgb_rows_half_cols_quarter"] = (rgb_big, (0.5, 0.25), "bicubic")
    cases["noise_rows_quarter_cols_x2"] = (noise[:, :12], (0.25, 2.0), "bicubic")
    # the other kernels offered for realistic degradations
    cases["rgb_quarter_bilinear"] = (rgb_big, (0.25, 0.25), "bilinear")
    cases["grey_third_bilinear"] = (grey_big, (1 / 3, 1 / 3), "bilinear")
    cases["rgb_x2_bilinear"] = (rgb_small, (2.0, 2.0), "bilinear")
    # Octave's 'nearest' clamps a sample point past the last pixel where MATLAB mirrors it:
    # keep sizes where the two agree (a multiple of the factor, or the mirror hits the edge)
    cases["rgb_quarter_nearest"] = (rgb_big[:40, :56], (0.25, 0.25), "nearest")
    cases["grey_third_nearest"] = (grey_big, (1 / 3, 1 / 3), "nearest")
    return {k: (np.ascontiguousarray(v), s, m) for k, (v, s, m) in cases.items()}


def main() -> int:
    from scipy.io import loadmat, savemat

    cases = make_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.mat", Path(tmp) / "out.mat"
        mat: dict[str, np.ndarray | float] = {}
        for name, (img, s, method) in cases.items():
            mat[f"{name}_in"] = img
            mat[f"{name}_scale"] = np.array([s], dtype=np.float64)
            mat[f"{name}_method"] = method
        savemat(inp, mat)
        script = OCTAVE_SCRIPT.format(inp=inp, out=out)
        proc = subprocess.run(["octave-cli", "--no-gui", "--quiet", "--eval", script],
                              capture_output=True, text=True, check=False)
        if not out.exists():
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 1
        res = loadmat(out)
    store: dict[str, np.ndarray] = {
        "names": np.array(list(cases)),
        "scales": np.array([s for _, s, _ in cases.values()], dtype=np.float64),  # (N, 2)
        "methods": np.array([m for _, _, m in cases.values()]),
    }
    for name, (img, _, _) in cases.items():
        store[f"{name}_in"] = img
        for kind in ("double", "uint8", "octave_uint8"):
            arr = np.asarray(res[f"{name}_{kind}"])
            store[f"{name}_{kind}"] = arr.reshape(arr.shape[:2] + img.shape[2:])
    np.savez_compressed(OUT, **store)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(cases)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
