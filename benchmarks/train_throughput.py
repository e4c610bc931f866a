"""Training throughput and peak memory of NAFSSR presets on this machine's CPU.

For each preset, in a fresh subprocess (so that peak memory is its own):

- ``engine``: the real ``stereosr.train`` loop (data pipeline with crops and augmentation,
  AdamW, cosine schedule, clipping, logging) on synthetic stereo pairs, samples/s from its own
  per-iteration log;
- ``bare``: a minimal loop over the same model (pre-made random batches, forward, MSE,
  backward, clipping, AdamW step), the floor the engine can reach;
- peak resident memory (VmHWM of /proc/self/status) of the subprocess.

Batch 4 of 30 x 90 LR patches at x4 (HR 120 x 360). Usage::

    python benchmarks/train_throughput.py                # T and S
    python benchmarks/train_throughput.py --presets T S B L --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BATCH = 4
PATCH = (30, 90)
SCALE = 4


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MiB), from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def synth_pairs(root: Path, n: int = 4) -> Path:
    """Flickr1024-layout pairs of random smooth texture with a constant disparity."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    h, w = 2 * PATCH[0] * SCALE, 2 * PATCH[1] * SCALE
    for i in range(n):
        d = 8 + 4 * i
        small = (rng.random((h // 8, (w + d) // 8, 3)) * 255).astype(np.uint8)
        img = np.asarray(Image.fromarray(small).resize((w + d, h), Image.BICUBIC))
        Image.fromarray(img[:, :w]).save(root / f"{i:04d}_L.png")
        Image.fromarray(img[:, d:d + w]).save(root / f"{i:04d}_R.png")
    return root


def bare_loop(variant: str, warmup: int, steps: int) -> float:
    """Samples/s of forward + MSE + backward + clip + AdamW on fixed random batches."""
    import torch

    from stereosr.models.nafssr import build_nafssr

    torch.manual_seed(0)
    model = build_nafssr(variant, SCALE)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.9))
    h, w = PATCH
    lr_l, lr_r = torch.rand(BATCH, 3, h, w), torch.rand(BATCH, 3, h, w)
    hr = torch.rand(BATCH, 6, SCALE * h, SCALE * w)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        sr_l, sr_r = model(lr_l, lr_r)
        loss = torch.nn.functional.mse_loss(torch.cat([sr_l, sr_r], 1), hr)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return BATCH * len(times) / sum(times)


def engine_loop(variant: str, warmup: int, steps: int, work: Path) -> float:
    """Samples/s of ``stereosr.train`` (per-iteration rates from its JSONL log)."""
    from stereosr.train.config import config_from_dict
    from stereosr.train.loop import train

    data = synth_pairs(work / "pairs")
    raw: dict[str, Any] = {
        "model": {"variant": variant, "scale": SCALE},
        "data": {"train_root": str(data), "lr_patch": list(PATCH), "batch_size": BATCH},
        "schedule": {"total_iters": warmup + steps},
        "train": {"run_dir": str(work / "run"), "log_every": 1, "checkpoint_every": 10**6,
                  "progress": False, "tensorboard": False},
    }
    train(config_from_dict(raw))
    rows = [json.loads(x) for x in (work / "run" / "log.jsonl").read_text().splitlines()]
    rates = [r["it_s"] for r in rows if r["kind"] == "train"][warmup:]
    return BATCH * len(rates) / sum(1.0 / r for r in rates)


def one(variant: str, warmup: int, steps: int) -> dict[str, Any]:
    import torch

    from stereosr.models.nafssr import build_nafssr

    torch.set_num_threads(os.cpu_count() or 1)
    params = sum(p.numel() for p in build_nafssr(variant, SCALE).parameters())
    with tempfile.TemporaryDirectory() as tmp:
        engine = engine_loop(variant, warmup, steps, Path(tmp))
    bare = bare_loop(variant, warmup, steps)
    return {"preset": variant, "params": params, "engine": engine, "bare": bare,
            "peak_mb": peak_rss_mb(), "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["T", "S"], choices=["T", "S", "B", "L"])
    ap.add_argument("--steps", type=int, default=4, help="timed steps per loop")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.warmup, args.steps)))
        return
    rows = []
    for v in args.presets:
        res = subprocess.run([sys.executable, __file__, "--one", v, "--steps", str(args.steps),
                              "--warmup", str(args.warmup)], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"NAFSSR training throughput, x{SCALE}, batch {BATCH} of {PATCH[0]}x{PATCH[1]} LR "
          f"patches, CPU ({os.cpu_count()} cores, {rows[0]['threads']} threads), "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    print(f"{'preset':<7}{'params':>12}{'engine samples/s':>18}{'bare samples/s':>16}"
          f"{'engine/bare':>13}{'s/iter':>9}{'peak RSS MiB':>14}")
    for r in rows:
        print(f"{r['preset']:<7}{r['params']:>12,}{r['engine']:>18.2f}{r['bare']:>16.2f}"
              f"{r['engine'] / r['bare']:>13.2f}{BATCH / r['engine']:>9.2f}{r['peak_mb']:>14.0f}")


if __name__ == "__main__":
    main()
