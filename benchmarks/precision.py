"""Half-precision numerics on a real pair: the packaged model on the Motorcycle test pair
(scikit-image; LR by MATLAB bicubic x1/4 of the HR views cropped to a multiple of 4), each
precision against fp32, with the official NAFSSR code (same weights, same precision through
``torch.autocast``) as the reference for what a precision costs.

Columns: PSNR ((L+R)/2, RGB, uint8, no crop) and its change from fp32; the relative L2 of the
SR pair to the fp32 SR pair for ours and for the official code; ``half model``: ours converted
with ``model.half()`` / ``.to(torch.bfloat16)`` (weights and features in the half type,
statistics in float32), run through ``stereosr.infer.upscale_tensors`` (inputs follow the
model's dtype).

    python benchmarks/precision.py --device cuda            # fp32, tf32, bf16, fp16
    python benchmarks/precision.py --device cpu --precisions fp32,bf16,fp16 --crop 96x160
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import choices_arg, machine_line, rel_l2, setup_device
from official import SixChannel, official_from

from stereosr.degrade.bicubic import imresize
from stereosr.infer import upscale_tensors
from stereosr.infer.precision import PRECISIONS, precision_context
from stereosr.metrics.psnr import psnr
from stereosr.models.checkpoint import load_model
from stereosr.models.registry import DEFAULT_MODEL
from stereosr.models.tlc import tlc_train_size


def motorcycle(crop: tuple[int, int] | None) -> tuple[np.ndarray, ...]:
    """HR left/right (cropped to a multiple of 4, optionally to ``crop`` LR pixels from the
    top-left) and their MATLAB-bicubic LR views, uint8."""
    from skimage import data

    left, right, _ = data.stereo_motorcycle()
    h, w = left.shape[0] // 4 * 4, left.shape[1] // 4 * 4
    if crop:
        h, w = min(h, 4 * crop[0]), min(w, 4 * crop[1])
    hr_l, hr_r = left[:h, :w], right[:h, :w]
    return hr_l, hr_r, imresize(hr_l, 0.25), imresize(hr_r, 0.25)


def _psnr(sr: tuple[np.ndarray, np.ndarray], hr: tuple[np.ndarray, np.ndarray]) -> float:
    return 0.5 * (psnr(sr[0], hr[0]) + psnr(sr[1], hr[1]))


def _t(a: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(
        np.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precisions", default=None, type=choices_arg(PRECISIONS),
                    help="default: fp32,tf32,bf16,fp16 on CUDA, fp32,bf16 on the CPU")
    ap.add_argument("--crop", default=None, metavar="HxW",
                    help="LR crop (default: the whole 185x125 LR pair)")
    ap.add_argument("--no-half-model", action="store_true", help="skip the model.half() rows")
    args = ap.parse_args(argv)
    device = setup_device(args.device, args.threads)
    precisions = (args.precisions or ("fp32,tf32,bf16,fp16" if device.type == "cuda"
                                      else "fp32,bf16")).split(",")
    crop = tuple(int(v) for v in args.crop.split("x")) if args.crop else None
    hr_l, hr_r, lr_l, lr_r = motorcycle(crop)  # type: ignore[arg-type]
    ours = load_model(DEFAULT_MODEL, device=str(device)).eval()
    off = SixChannel(official_from(ours, tlc_train_size(ours) or (30, 90)).to(device))
    left, right = _t(lr_l, device), _t(lr_r, device)
    print(machine_line(device))
    print(f"packaged model {DEFAULT_MODEL} (width {ours.config.width}, "
          f"{ours.config.num_blocks} blocks, x{ours.scale}) on Motorcycle, LR "
          f"{lr_l.shape[1]}x{lr_l.shape[0]}", flush=True)

    def run(net: object, prec: str) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode(), precision_context(prec, device):
            out = net(left, right)  # type: ignore[operator]
        return out[0].float(), out[1].float()

    ref_ours, ref_off = run(ours, "fp32"), run(off, "fp32")
    base = _psnr((_u8(ref_ours[0]), _u8(ref_ours[1])), (hr_l, hr_r))
    rows = []
    t0 = time.perf_counter()
    for prec in precisions:
        o, f = run(ours, prec), run(off, prec)
        p = _psnr((_u8(o[0]), _u8(o[1])), (hr_l, hr_r))
        rows.append((f"ours {prec}", p, p - base, rel_l2(o, ref_ours), rel_l2(f, ref_off),
                     all(bool(torch.isfinite(t).all()) for t in o)))
    if not args.no_half_model:
        for dt, name in ((torch.float16, "fp16"), (torch.bfloat16, "bf16")):
            half = copy.deepcopy(ours).to(dt)
            o = upscale_tensors(half, left, right, auto_tile=False)
            p = _psnr((_u8(o[0]), _u8(o[1])), (hr_l, hr_r))
            rows.append((f"{name} model", p, p - base, rel_l2(o, ref_ours), float("nan"),
                         all(bool(torch.isfinite(t).all()) for t in o)))
    print()
    head = (f"{'run':<14}{'PSNR dB':>9}{'change dB':>11}{'relL2 ours':>12}"
            f"{'relL2 official':>16}")
    print(head)
    print("-" * len(head))
    for name, p, dp, r_o, r_f, finite in rows:
        rf = "-" if np.isnan(r_f) else f"{r_f:.2e}"
        print(f"{name:<14}{p:>9.3f}{dp:>+11.4f}{r_o:>12.2e}{rf:>16}"
              + ("" if finite else "  NOT FINITE"))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; {machine_line(device)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
