"""SCAM attention alone: the shared-exponential path against ``scaled_dot_product_attention``
on this machine, for inference and for a training step (forward + backward).

Both compute the same two attentions (right-to-left and left-to-right along rows) with
residuals; times are medians of alternating runs, ``MB`` the peak memory of a call above its
start (for ``train``: forward and backward, so the tensors kept for backward count). This is the measurement behind the choice of
the CPU attention path in :mod:`stereosr.models.memory` (on CUDA the fused SDPA kernels are
used; see ``benchmarks/gpu_check.sh``).

    python benchmarks/attention.py [--threads 2] [--repeats 7] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import alternate, setup_device

from stereosr.models.blocks import SCAM, _sdpa_pair
from stereosr.models.lean_autograd import cross_attention
from stereosr.models.memory import attention_rows

# (rows = B*H, W, C) of NAFSSR-T at 128x128, NAFSSR-S at 160x256, T at 270x480, and a training
# batch of 32 patches of 30x90 with T.
SHAPES = {"T 128x128": (128, 128, 48), "S 160x256": (160, 256, 64),
          "T 270x480": (270, 480, 48), "train T b32 30x90": (960, 90, 48)}


def _run(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device
         ) -> dict[str, tuple[float, float]]:
    """Per function: (median ms, peak MB above the start of a call)."""
    res = alternate(fns, repeats, device)
    return {k: (1e3 * m.median, m.peak_mb) for k, m in res.items()}


def _bench_shape(name: str, n: int, w: int, c: int, dev: torch.device, repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    q = (torch.randn(2, n, w, c, generator=g) * 0.3).to(dev)
    v = torch.randn(2, n, w, c, generator=g).to(dev)
    x = torch.randn(2, n, w, c, generator=g).to(dev)
    step = attention_rows(n, w, c, torch.device("cpu"), torch.float32)

    def shared_inf() -> torch.Tensor:
        xx = x.clone()
        ql, qr = q.unbind(0)
        vl, vr = v.unbind(0)
        xl, xr = xx.unbind(0)
        for s in range(0, n, step):
            e = min(n, s + step)
            res = SCAM._attend(ql[s:e], qr[s:e], vl[s:e], vr[s:e], True, True)
            assert res is not None
            xl[s:e].addcdiv_(res[0], res[1])
            xr[s:e].addcdiv_(res[2], res[3])
        return xx

    def sdpa_inf() -> torch.Tensor:
        r2l, l2r = _sdpa_pair(q[0], q[1], v[0], v[1])
        return torch.stack([x[0] + r2l, x[1] + l2r])

    def shared_train() -> None:
        qq, vv = q.clone().requires_grad_(), v.clone().requires_grad_()
        out = cross_attention(qq, vv, x, step, 1e-25, True)
        out.sum().backward()

    def sdpa_train() -> None:
        qq, vv = q.clone().requires_grad_(), v.clone().requires_grad_()
        r2l, l2r = _sdpa_pair(qq[0], qq[1], vv[0], vv[1])
        (r2l.sum() + l2r.sum()).backward()

    with torch.inference_mode():
        diff = float((shared_inf() - sdpa_inf()).abs().max())
        t = _run({"shared": shared_inf, "sdpa": sdpa_inf}, repeats, dev)
    _line(name, "infer", t, f"{diff:.1e}")
    t = _run({"shared": shared_train, "sdpa": sdpa_train}, max(3, repeats // 2), dev)
    _line(name, "train", t, "")


def _line(name: str, mode: str, t: dict[str, tuple[float, float]], diff: str) -> None:
    (ts, ms), (tq, mq) = t["shared"], t["sdpa"]
    print(f"{name:<20}{mode:<7}{ts:>11.1f}{tq:>10.1f}{tq / ts:>13.2f}{ms:>11.0f}{mq:>9.0f}"
          f"{diff:>11}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    dev = setup_device(args.device, args.threads)
    print(f"torch {torch.__version__}, {dev}, {torch.get_num_threads()} threads, fp32, "
          f"median of {args.repeats} alternating runs")
    print(f"{'shape':<20}{'mode':<7}{'shared ms':>11}{'sdpa ms':>10}{'sdpa/shared':>13}"
          f"{'shared MB':>11}{'sdpa MB':>9}{'max|diff|':>11}")
    for name, (n, w, c) in SHAPES.items():
        _bench_shape(name, n, w, c, dev, args.repeats)

if __name__ == "__main__":
    main()
