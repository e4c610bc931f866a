"""Speed and memory of NAFSSR: our implementation against the plain reference
(benchmarks/plain_nafssr.py), measured in one run and printed as one table.

Rows:
- ``infer``: one stereo pair, fp32, ``torch.inference_mode``, TLC on, random weights; plain
  and ours are called alternately (plain, ours, plain, ours, ...) and the medians compared,
  since the machine may be shared. ``max|diff|`` compares the two outputs. ``MB`` is the
  process's peak resident memory during the call (``VmHWM`` reset before each call).
- ``train``: one optimisation step (forward, MSE loss on both views, backward, AdamW) on the
  same batch, plain and ours alternately; ``max|diff|`` compares the first step's gradients
  (relative to the largest gradient). ``MB`` is the peak resident memory of a fresh process
  doing two such steps (so it includes interpreter and library start-up, ~0.25 GB).
- ``4k`` (with ``--4k``): a 960x540 LR pair (3840x2160 output) with NAFSSR-S in a fresh
  process, without tiling, and with ``stereosr.infer.upscale.upscale_tensors(tile=...)``
  when that module exists; time and the process's peak resident memory.

Usage::

    python benchmarks/inference.py                 # T and S, 128x128 and 160x256, training
    python benchmarks/inference.py --4k            # also the 4K pair (adds ~10+ minutes)
    python benchmarks/inference.py --compile       # also ours under torch.compile
    python benchmarks/inference.py --repeats 5 --sizes 128x128,256x256 --presets T
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from plain_nafssr import plain_from_model

from stereosr.models import NAFSSR, build_nafssr, enable_tlc

# ------------------------------------------------------------------------------------------
# memory helpers (Linux)


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak() -> None:
    """Return freed heap to the OS, then reset VmHWM to the current resident size."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # pragma: no cover - not glibc
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:  # pragma: no cover - not Linux
        pass


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(seconds, peak MB during the call, result)."""
    _reset_peak()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    return dt, _status_mb("VmHWM"), out


# ------------------------------------------------------------------------------------------
# models


def random_model(preset: str, scale: int = 4, seed: int = 0, tlc: bool = True) -> NAFSSR:
    """A preset with random weights (beta/gamma too, so every branch contributes)."""
    torch.manual_seed(seed)
    model = build_nafssr(preset, scale)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    if tlc:
        enable_tlc(model)
    return model


def _pair(h: int, w: int, b: int = 1, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)


# ------------------------------------------------------------------------------------------
# rows


def bench_inference(preset: str, size: tuple[int, int], repeats: int, compile_: bool
                    ) -> list[dict[str, Any]]:
    ours = random_model(preset).eval()
    plain = plain_from_model(ours).eval()
    left, right = _pair(*size)
    warm = _pair(24, 40)
    compiled = None
    compile_s = float("nan")
    with torch.inference_mode():
        ours(*warm)
        plain(*warm)
        if compile_:
            compiled = torch.compile(ours, dynamic=False)
            t0 = time.perf_counter()
            compiled(left, right)
            compile_s = time.perf_counter() - t0
        tp: list[float] = []
        to: list[float] = []
        tc: list[float] = []
        mp = mo = mc = 0.0
        diff = diffc = 0.0
        for _ in range(repeats):
            dt, mb, ref = _timed(lambda: plain(left, right))
            tp.append(dt)
            mp = max(mp, mb)
            dt, mb, out = _timed(lambda: ours(left, right))
            to.append(dt)
            mo = max(mo, mb)
            diff = max(diff, *(float((a - b).abs().max()) for a, b in zip(out, ref)))
            if compiled is not None:
                dt, mb, outc = _timed(lambda: compiled(left, right))
                tc.append(dt)
                mc = max(mc, mb)
                diffc = max(diffc, *(float((a - b).abs().max()) for a, b in zip(outc, ref)))
            del ref, out
    rows = [{"kind": "infer", "model": preset, "size": f"{size[0]}x{size[1]}",
                 "plain_s": statistics.median(tp), "ours_s": statistics.median(to),
                 "diff": diff, "plain_mb": mp, "ours_mb": mo, "note": f"median of {repeats}"}]
    if compiled is not None:
        rows.append({"kind": "infer+compile", "model": preset, "size": f"{size[0]}x{size[1]}",
                         "plain_s": statistics.median(tp), "ours_s": statistics.median(tc),
                         "diff": diffc, "plain_mb": mp, "ours_mb": mc,
                         "note": f"first call (compile) {compile_s:.0f} s"})
    return rows


def _train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, batch: tuple[Any, ...]
                ) -> None:
    left, right, hr_l, hr_r = batch
    opt.zero_grad(set_to_none=True)
    sr_l, sr_r = model(left, right)
    loss = F.mse_loss(sr_l, hr_l) + F.mse_loss(sr_r, hr_r)
    loss.backward()
    opt.step()


def _train_setup(which: str, batch: int, size: tuple[int, int]
                 ) -> tuple[torch.nn.Module, torch.optim.Optimizer, tuple[Any, ...]]:
    model: torch.nn.Module = random_model("T", tlc=False)
    if which == "plain":
        model = plain_from_model(model, tlc=False)
    elif which == "ours+ckpt":
        model.set_checkpointing(True)  # type: ignore[operator]
    model.train()
    # fused=True: one kernel for all parameters (the per-parameter loop costs ~500 small ops).
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.9), weight_decay=0.0,
                            fused=True)
    left, right = _pair(*size, b=batch, seed=3)
    hr = _pair(size[0] * 4, size[1] * 4, b=batch, seed=4)
    return model, opt, (left, right, *hr)


def _first_grads(model: torch.nn.Module, batch: tuple[Any, ...]) -> dict[str, torch.Tensor]:
    left, right, hr_l, hr_r = batch
    model.zero_grad(set_to_none=True)
    sr_l, sr_r = model(left, right)
    (F.mse_loss(sr_l, hr_l) + F.mse_loss(sr_r, hr_r)).backward()
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def _train_memory(which: str, batch: int, size: tuple[int, int], threads: int) -> float:
    """Peak RSS (MB) of a fresh process doing two training steps."""
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import torch; "
            f"torch.set_num_threads({threads}); import inference as b; "
            f"m, o, x = b._train_setup({which!r}, {batch}, {tuple(size)!r}); "
            "b._train_step(m, o, x); b._train_step(m, o, x); "
            "print(b._status_mb('VmHWM'))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(res.stdout.strip().splitlines()[-1])


def bench_training(batch: int, size: tuple[int, int], steps: int, threads: int
                   ) -> list[dict[str, Any]]:
    variants = ["plain", "ours", "ours+ckpt"]
    setups = {v: _train_setup(v, batch, size) for v in variants}
    grads = {v: _first_grads(setups[v][0], setups[v][2]) for v in variants}
    ref = grads["plain"]
    gmax = max(float(g.abs().max()) for g in ref.values())
    diffs = {v: max(float((grads[v][k] - ref[k]).abs().max()) for k in ref) / gmax
             for v in variants}
    for v in variants:  # warm-up step
        _train_step(*setups[v])
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(steps):
        for v in variants:
            t0 = time.perf_counter()
            _train_step(*setups[v])
            times[v].append(time.perf_counter() - t0)
    mem = {v: _train_memory(v, batch, size, threads) for v in variants}
    tp = statistics.median(times["plain"])
    rows = []
    for v in ("ours", "ours+ckpt"):
        to = statistics.median(times[v])
        rows.append({"kind": "train", "model": "T" + ("+ckpt" if v == "ours+ckpt" else ""),
                         "size": f"b{batch} {size[0]}x{size[1]}", "plain_s": tp, "ours_s": to,
                         "diff": diffs[v], "plain_mb": mem["plain"], "ours_mb": mem[v],
                         "note": f"{batch / tp:.2f} -> {batch / to:.2f} samples/s, "
                              f"median of {steps}"})
    return rows


# ------------------------------------------------------------------------------------------
# 4K


def _run_4k(tile: int | None, threads: int) -> dict[str, float]:
    """Time and peak RSS of a fresh process upscaling one 960x540 pair with NAFSSR-S."""
    code = f"""
import sys, time, json
sys.path.insert(0, {str(HERE)!r})
import torch
torch.set_num_threads({threads})
import inference as b
model = b.random_model("S").eval()
left, right = b._pair(540, 960)
tile = {tile!r}
t0 = time.perf_counter()
if tile is None:
    with torch.inference_mode():
        out = model(left, right)
else:
    from stereosr.infer.upscale import upscale_tensors
    out = upscale_tensors(model, left, right, tile=tile)
dt = time.perf_counter() - t0
assert out[0].shape == (1, 3, 2160, 3840), out[0].shape
print(json.dumps(dict(seconds=dt, peak_mb=b._status_mb("VmHWM"),
                      finite=bool(torch.isfinite(out[0]).all() and torch.isfinite(out[1]).all()))))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        raise RuntimeError(f"4K run failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bench_4k(tile: int | None, threads: int) -> list[dict[str, Any]]:
    rows = []
    r = _run_4k(None, threads)
    rows.append({"kind": "4k", "model": "S", "size": "540x960", "plain_s": float("nan"),
                     "ours_s": r["seconds"], "diff": float("nan"), "plain_mb": float("nan"),
                     "ours_mb": r["peak_mb"], "note": "no tiling, 3840x2160 out"
                     + ("" if r["finite"] else ", NOT FINITE")})
    try:
        import stereosr.infer.upscale  # noqa: F401
    except ImportError:
        return rows
    if tile:
        r = _run_4k(tile, threads)
        rows.append({"kind": "4k", "model": "S", "size": "540x960", "plain_s": float("nan"),
                         "ours_s": r["seconds"], "diff": float("nan"), "plain_mb": float("nan"),
                         "ours_mb": r["peak_mb"], "note": f"upscale_tensors(tile={tile})"})
    return rows


# ------------------------------------------------------------------------------------------
# table


def _fmt(v: float, spec: str) -> str:
    width = int(spec.split(".")[0] or 0)
    return "-".rjust(width) if math.isnan(v) else format(v, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (f"{'row':<14} {'model':<7} {'LR size':<12} {'plain s':>9} {'ours s':>9} "
            f"{'speed-up':>8} {'max|diff|':>9} {'plain MB':>9} {'ours MB':>8}  note")
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = float("nan") if math.isnan(r["plain_s"]) else r["plain_s"] / r["ours_s"]
        print(f"{r['kind']:<14} {r['model']:<7} {r['size']:<12} {_fmt(r['plain_s'], '9.2f')} "
              f"{_fmt(r['ours_s'], '9.2f')} {_fmt(ratio, '7.2f')}{' ' if math.isnan(ratio) else 'x'} "
              f"{_fmt(r['diff'], '9.1e')} {_fmt(r['plain_mb'], '9.0f')} "
              f"{_fmt(r['ours_mb'], '8.0f')}  {r['note']}")


def _sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        h, w = (int(v) for v in part.lower().split("x"))
        out.append((h, w))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--presets", default="T,S", help="comma-separated presets (default T,S)")
    ap.add_argument("--sizes", type=_sizes, default=_sizes("128x128,160x256"),
                    help="LR sizes HxW, comma-separated (default 128x128,160x256)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per model (default 3)")
    ap.add_argument("--train-batch", type=int, default=4)
    ap.add_argument("--train-size", type=_sizes, default=_sizes("30x90"), metavar="HxW")
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--no-train", action="store_true", help="skip the training rows")
    ap.add_argument("--no-infer", action="store_true", help="skip the inference rows")
    ap.add_argument("--4k", dest="four_k", action="store_true",
                    help="also upscale a 960x540 pair with NAFSSR-S (slow)")
    ap.add_argument("--tile", type=int, default=135,
                    help="LR rows per tile for the tiled 4K row (0: skip; default 135)")
    ap.add_argument("--compile", action="store_true",
                    help="also time ours under torch.compile (first call compiles: slow)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, "
          f"{os.cpu_count()} CPUs visible; load average at start "
          f"{os.getloadavg()[0]:.1f}")
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    if not args.no_infer:
        for preset in args.presets.split(","):
            for size in args.sizes:
                rows.extend(bench_inference(preset.strip().upper(), size, args.repeats,
                                            args.compile))
                print(f"  done: infer {preset} {size}", file=sys.stderr, flush=True)
    if not args.no_train:
        rows.extend(bench_training(args.train_batch, args.train_size[0], args.train_steps,
                                   args.threads))
        print("  done: train", file=sys.stderr, flush=True)
    if args.four_k:
        rows.extend(bench_4k(args.tile or None, args.threads))
    print()
    print_table(rows)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; load average at end "
          f"{os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
