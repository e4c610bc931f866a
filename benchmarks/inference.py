"""Inference speed, memory and numerics of stereosr's NAFSSR against the OFFICIAL NAFSSR code
(megvii-research/NAFNet, loaded from ``../shared/reference`` by ``benchmarks/official.py``;
never part of the package), measured in one run and printed as one table of ratios.

Per row (preset x LR size x precision): both models get the same random weights (TLC on, x4)
and the same pair; each is warmed up, then they are called alternately (official, ours,
official, ours, ...) and the medians compared, so both see the same machine load. Both are
called directly (``model(left, right)`` / ``net(6-channel)``) under ``torch.inference_mode``.

- ``precision``: ``fp32`` (TF32 off), ``tf32`` (CUDA TF32 matmuls/convs), ``bf16`` / ``fp16``
  (``torch.autocast`` for both models; ours keeps float32 residuals and statistics).
- ``speed-up``: official median / ours median; CUDA times from CUDA events.
- ``MB``: peak memory of one call above what was allocated before it (CUDA allocator peak;
  on the CPU the process's resident-set peak, VmHWM, after resetting it).
- ``max|diff|``: ours against official in the same precision. ``relL2 ours / official``: each
  one's relative L2 difference to its own fp32 output (half precision rows).
- ``--plain`` adds the plain reference implementation (benchmarks/plain_nafssr.py) as a
  second check (its speed-up column is official / plain).

Rows are printed as they are measured (one table).

Usage::

    python benchmarks/inference.py                                  # CPU: T, S; 128x128, 160x256
    python benchmarks/inference.py --device cuda                    # T,S,B,L x 3 sizes x 4 modes
    python benchmarks/inference.py --presets T --sizes 128x128 --precisions fp32,bf16 --repeats 7
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import (
    alternate,
    choices_arg,
    machine_line,
    pair,
    random_model,
    rel_l2,
    setup_device,
    sizes_arg,
)
from official import SixChannel, official_from

from stereosr.infer.precision import PRECISIONS, precision_context
from stereosr.models.nafssr import VARIANTS

DEFAULTS = {
    "cpu": {"presets": "T,S", "sizes": "128x128,160x256", "precisions": "fp32"},
    "cuda": {"presets": "T,S,B,L", "sizes": "128x128,270x480,540x960",
             "precisions": "fp32,tf32,bf16,fp16"},
}


def _outputs(fn: Any, left: torch.Tensor, right: torch.Tensor, precision: str,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode(), precision_context(precision, device):
        return fn(left, right)  # type: ignore[no-any-return]


def bench_row(preset: str, size: tuple[int, int], precision: str, device: torch.device,
              repeats: int, plain: bool, compile_: bool) -> dict[str, Any]:
    ours = random_model(preset).eval()
    off = SixChannel(official_from(ours).to(device))
    ours = ours.to(device)
    fns: dict[str, Any] = {"official": off, "ours": ours}
    if plain:
        from plain_nafssr import plain_from_model

        fns["plain"] = plain_from_model(ours).eval().to(device)
    if compile_:
        fns["compiled"] = torch.compile(ours, dynamic=False)
    left, right = pair(*size, device=device)
    outs = {k: _outputs(f, left, right, precision, device) for k, f in fns.items()}
    rel = {}
    if precision in ("bf16", "fp16"):
        for k in ("official", "ours"):
            rel[k] = rel_l2(outs[k], _outputs(fns[k], left, right, "fp32", device))
    diff = max(float((a.float() - b.float()).abs().max())
               for a, b in zip(outs["ours"], outs["official"]))
    finite = all(bool(torch.isfinite(t).all()) for t in outs["ours"])
    del outs

    def call(f: Any) -> Any:
        def run() -> Any:
            with torch.inference_mode(), precision_context(precision, device):
                return f(left, right)
        return run

    res = alternate({k: call(f) for k, f in fns.items()}, repeats, device, warmup=0)
    row = {"preset": preset, "size": f"{size[0]}x{size[1]}", "precision": precision,
           "official_s": res["official"].median, "ours_s": res["ours"].median,
           "official_mb": res["official"].peak_mb, "ours_mb": res["ours"].peak_mb,
           "diff": diff, "rel_ours": rel.get("ours", float("nan")),
           "rel_official": rel.get("official", float("nan")), "finite": finite}
    if plain:
        row["plain_s"] = res["plain"].median
    if compile_:
        row["compiled_s"] = res["compiled"].median
    return row


def _f(v: float, spec: str) -> str:
    width = int(spec.split(".")[0] or 0)
    return "-".rjust(width) if math.isnan(v) else format(v, spec)


def table_header(plain: bool, compile_: bool) -> str:
    head = (f"{'preset':<6} {'LR size':<9} {'prec':<5} {'official ms':>11} {'ours ms':>9} "
            f"{'speed-up':>8} {'official MB':>11} {'ours MB':>8} {'mem ratio':>9} "
            f"{'max|diff|':>9} {'relL2 ours':>10} {'relL2 off.':>10}")
    if plain:
        head += f" {'plain ms':>9} {'off/plain':>9}"
    if compile_:
        head += f" {'compiled ms':>11} {'off/comp':>8}"
    return head + "\n" + "-" * len(head)


def table_line(r: dict[str, Any]) -> str:
    mem = r["ours_mb"] / r["official_mb"] if r["official_mb"] > 0 else math.nan
    line = (f"{r['preset']:<6} {r['size']:<9} {r['precision']:<5} "
            f"{1e3 * r['official_s']:>11.1f} {1e3 * r['ours_s']:>9.1f} "
            f"{r['official_s'] / r['ours_s']:>7.2f}x "
            f"{r['official_mb']:>11.0f} {r['ours_mb']:>8.0f} {_f(mem, '9.2f')} "
            f"{r['diff']:>9.1e} {_f(r['rel_ours'], '10.2e')} {_f(r['rel_official'], '10.2e')}")
    if "plain_s" in r:
        line += f" {1e3 * r['plain_s']:>9.1f} {r['official_s'] / r['plain_s']:>8.2f}x"
    if "compiled_s" in r:
        line += f" {1e3 * r['compiled_s']:>11.1f} {r['official_s'] / r['compiled_s']:>7.2f}x"
    if not r["finite"]:
        line += "  NOT FINITE"
    return line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2, help="CPU torch threads (default 2)")
    ap.add_argument("--presets", default=None, type=choices_arg(sorted(VARIANTS), upper=True),
                    help="comma-separated, e.g. T,S (default per device)")
    ap.add_argument("--sizes", type=sizes_arg, default=None, help="LR sizes HxW, comma-separated")
    ap.add_argument("--precisions", default=None, type=choices_arg(PRECISIONS),
                    help=f"comma-separated of {','.join(PRECISIONS)} (default per device)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per model (default 5)")
    ap.add_argument("--plain", action="store_true", help="also time the plain reference")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(ours)")
    args = ap.parse_args(argv)
    device = setup_device(args.device, args.threads)
    d = DEFAULTS[device.type]
    presets = [p.strip().upper() for p in (args.presets or d["presets"]).split(",")]
    sizes = args.sizes or sizes_arg(d["sizes"])
    precisions = [p.strip() for p in (args.precisions or d["precisions"]).split(",")]
    print(machine_line(device))
    print(f"official NAFSSR vs stereosr, random weights, TLC on, x4, batch 1, median of "
          f"{args.repeats} alternating calls after one warm-up", flush=True)
    print(table_header(args.plain, args.compile), flush=True)
    t0 = time.perf_counter()
    for preset in presets:
        for size in sizes:
            for prec in precisions:
                row = bench_row(preset, size, prec, device, args.repeats, args.plain,
                                args.compile)
                print(table_line(row), flush=True)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; {machine_line(device)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
