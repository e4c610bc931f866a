"""PNG codecs for 16-bit colour: the measurement behind the choice of imagecodecs in
:mod:`stereosr.io`. Decodes and encodes one 16-bit RGB image (a real photograph, tiled and
noised to 2000x1500) with each codec installed, checks that every decode is exact, and prints
median times as ratios to imagecodecs. Pillow is listed for reference only: it reduces 16-bit
colour to 8 bits.

    python benchmarks/image_codecs.py [--repeats 5] [--size 1500x2000]

Optional codecs (``pip install pypng opencv-python-headless``) are skipped when missing.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import imagecodecs
import numpy as np
from skimage import data


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", default="1500x2000", help="HxW of the test image")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    photo = data.astronaut().astype(np.uint16) * 257
    reps = (-(-h // photo.shape[0]), -(-w // photo.shape[1]), 1)
    img = np.tile(photo, reps)[:h, :w]
    img = (img + np.random.default_rng(0).integers(0, 256, img.shape)).astype(np.uint16)
    encoded = bytes(imagecodecs.png_encode(img))

    decoders: dict[str, Callable[[], np.ndarray]] = {
        "imagecodecs (libpng)": lambda: imagecodecs.png_decode(encoded)}
    encoders: dict[str, Callable[[], object]] = {
        "imagecodecs (libpng)": lambda: imagecodecs.png_encode(img)}
    try:
        import png

        def pypng_decode() -> np.ndarray:
            _, _, rows, _ = png.Reader(bytes=encoded).read()
            return np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(h, w, 3)

        def pypng_encode() -> bytes:
            buf = io.BytesIO()
            png.Writer(w, h, greyscale=False, bitdepth=16).write(buf, img.reshape(h, -1))
            return buf.getvalue()

        decoders["pypng (pure Python)"] = pypng_decode
        encoders["pypng (pure Python)"] = pypng_encode
    except ImportError:
        print("pypng not installed: skipped")
    try:
        import cv2

        raw = np.frombuffer(encoded, np.uint8)
        decoders["OpenCV (BGR order)"] = lambda: cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)[..., ::-1]
        encoders["OpenCV (BGR order)"] = lambda: cv2.imencode(".png", img[..., ::-1])
    except ImportError:
        print("opencv-python-headless not installed: skipped")

    print(f"16-bit RGB {w}x{h}, PNG of {len(encoded) / 1e6:.1f} MB; median of {args.repeats}")
    base_d = _median_s(decoders["imagecodecs (libpng)"], args.repeats)
    base_e = _median_s(encoders["imagecodecs (libpng)"], args.repeats)
    print(f"{'codec':24s} {'decode s':>9s} {'x':>6s} {'encode s':>9s} {'x':>6s}  exact")
    for name, decode in decoders.items():
        d = _median_s(decode, args.repeats)
        e = _median_s(encoders[name], max(1, args.repeats // 2))
        exact = np.array_equal(decode(), img)
        print(f"{name:24s} {d:9.3f} {d / base_d:6.2f} {e:9.3f} {e / base_e:6.2f}  {exact}")


if __name__ == "__main__":
    main()
