"""Training throughput and peak memory of stereosr's NAFSSR against the OFFICIAL NAFSSR code
(loaded from ``../shared/reference`` by ``benchmarks/official.py``) in the same loop, measured
in one run and printed as one table of ratios.

One step = forward on a batch of LR pairs, MSE against the HR pair (both views), backward,
gradient-norm clipping at 0.01 and AdamW (lr 1e-4, betas (0.9, 0.9); ``fused=True``), the
official recipe's loop. Both models start from the same random weights and see the same
pre-made batch; steps alternate (official, ours, ...) and the medians are compared.

- ``precision``: ``fp32``, ``tf32`` (CUDA), ``bf16`` (``torch.autocast`` for both).
- ``ours+compile`` (``--compile``): ``torch.compile`` of our model and loss together, the
  ``train.compile`` switch of ``stereosr train``.
- ``MB``: peak memory during a step above what was allocated before it (CUDA allocator; on
  the CPU the process's resident-set peak after resetting it).

Usage::

    python benchmarks/train_throughput.py                          # CPU, T, batch 4 of 30x90
    python benchmarks/train_throughput.py --device cuda --batch 32 --precisions tf32,bf16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import (
    alternate,
    choices_arg,
    machine_line,
    pair,
    random_model,
    setup_device,
    sizes_arg,
)
from official import SixChannel, official_from

from stereosr.infer.precision import precision_context
from stereosr.models.nafssr import VARIANTS

SCALE = 4


class Step:
    """One optimisation step of ``net`` (called as ``net(left, right)``) on a fixed batch."""

    def __init__(self, net: Any, params: Any, batch: tuple[torch.Tensor, ...], precision: str,
                 device: torch.device, compile_: str | None = None,
                 compile_mode: str = "default") -> None:
        self.net, self.batch, self.precision, self.device = net, batch, precision, device
        self.params = list(params)
        self.opt = torch.optim.AdamW(self.params, lr=1e-4, betas=(0.9, 0.9), weight_decay=0.0,
                                     fused=True)

        def loss_fn(left: torch.Tensor, right: torch.Tensor, hr_l: torch.Tensor,
                    hr_r: torch.Tensor) -> torch.Tensor:
            sr_l, sr_r = net(left, right)
            return F.mse_loss(sr_l.float(), hr_l) + F.mse_loss(sr_r.float(), hr_r)

        mode = {} if compile_mode == "default" else {"mode": compile_mode}
        self.loss_fn = torch.compile(loss_fn, backend=compile_, **mode) if compile_ else loss_fn

    def __call__(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        with precision_context(self.precision, self.device):
            loss = self.loss_fn(*self.batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 0.01)
        self.opt.step()
        return float(loss.detach())


def bench(preset: str, batch: int, patch: tuple[int, int], precision: str,
          device: torch.device, steps: int, warmup: int, compile_: str | None,
          compile_mode: str = "default") -> dict[str, Any]:
    # Ours trains with global pooling (TLC is an inference-time conversion); the official
    # constructor always converts to its local pool, which on training patches (smaller than
    # the 45x135 window) is the same global mean.
    ours = random_model(preset, SCALE, tlc=False)
    net = official_from(ours).train().to(device)
    ours = ours.train().to(device)
    left, right = pair(*patch, b=batch, seed=3, device=device)
    hr = pair(patch[0] * SCALE, patch[1] * SCALE, b=batch, seed=4, device=device)
    data = (left, right, *hr)
    steps_by = {"official": Step(SixChannel(net), net.parameters(), data, precision, device),
                "ours": Step(ours, ours.parameters(), data, precision, device)}
    if compile_:
        twin = random_model(preset, SCALE, tlc=False).train().to(device)
        steps_by["ours+compile"] = Step(twin, twin.parameters(), data, precision, device,
                                        compile_, compile_mode)
    res = alternate(steps_by, steps, device, warmup=warmup)
    t_off = res["official"].median
    rows = []
    for k in steps_by:
        if k == "official":
            continue
        rows.append({"preset": preset, "precision": precision, "which": k,
                     "official": batch / t_off, "ours": batch / res[k].median,
                     "official_mb": res["official"].peak_mb, "ours_mb": res[k].peak_mb})
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2, help="CPU torch threads (default 2)")
    ap.add_argument("--presets", default="T", type=choices_arg(sorted(VARIANTS), upper=True),
                    help="comma-separated presets (default T)")
    ap.add_argument("--batch", type=int, default=None, help="default 4 on CPU, 32 on CUDA")
    ap.add_argument("--patch", type=sizes_arg, default=sizes_arg("30x90"), metavar="HxW")
    ap.add_argument("--precisions", default=None, type=choices_arg(("fp32", "tf32", "bf16")),
                    help="comma-separated of fp32,tf32,bf16 (default: fp32 on CPU, tf32,bf16 "
                         "on CUDA)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per model (default 5)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time ours under torch.compile")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend (default inductor; 'eager' only captures)")
    ap.add_argument("--compile-mode", default="default",
                    choices=["default", "reduce-overhead", "max-autotune"],
                    help="torch.compile mode (reduce-overhead: CUDA graphs), as train.compile_mode")
    args = ap.parse_args(argv)
    device = setup_device(args.device, args.threads)
    batch = args.batch or (32 if device.type == "cuda" else 4)
    precisions = (args.precisions or ("tf32,bf16" if device.type == "cuda" else "fp32")).split(",")
    patch = args.patch[0]
    print(machine_line(device))
    print(f"training step (forward, MSE, backward, clip 0.01, fused AdamW), x{SCALE}, batch "
          f"{batch} of {patch[0]}x{patch[1]} LR patches; median of {args.steps} alternating "
          f"steps after {args.warmup} warm-up", flush=True)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for preset in args.presets.split(","):
        for prec in precisions:
            rows += bench(preset.strip().upper(), batch, patch, prec.strip(), device,
                          args.steps, args.warmup,
                          args.compile_backend if args.compile else None,
                          args.compile_mode)["rows"]
            print(f"  done: {preset} {prec}", file=sys.stderr, flush=True)
    print()
    head = (f"{'preset':<7}{'prec':<6}{'ours':<14}{'official samples/s':>19}"
            f"{'ours samples/s':>15}{'speed-up':>9}{'official MB':>12}{'ours MB':>9}"
            f"{'mem ratio':>10}")
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = r["ours_mb"] / r["official_mb"] if r["official_mb"] > 0 else float("nan")
        print(f"{r['preset']:<7}{r['precision']:<6}{r['which']:<14}{r['official']:>19.2f}"
              f"{r['ours']:>15.2f}{r['ours'] / r['official']:>8.2f}x{r['official_mb']:>12.0f}"
              f"{r['ours_mb']:>9.0f}{ratio:>10.2f}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; {machine_line(device)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
