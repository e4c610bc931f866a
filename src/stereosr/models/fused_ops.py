"""Memory-lean autograd functions for training NAFSSR on channels-last (…, C) tensors.

Autograd on the plain op sequence stores every intermediate it will need. These functions
compute the same values but keep fewer or smaller tensors for the backward pass, recomputing
only cheap element-wise work there (never a matrix product):

- :func:`norm_linear`: ``layer_norm(x) @ w.T + b`` keeps the input and per-pixel statistics,
  not the normalised copy (recomputed in one pass),
- :func:`dwconv_gate`: depthwise 3x3 conv followed by SimpleGate keeps the conv input only
  (the conv output is recomputed: a depthwise conv is cheap),
- :func:`gate_linear_residual`: ``res + simple_gate(f) @ w.T + b`` keeps ``f`` only.

They are used when autograd records the forward pass; inference uses in-place code instead.
Double backward is not supported.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["norm_linear", "dwconv_gate", "gate_linear_residual"]


class _NormLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor, eps: float) -> Tensor:
        xn, mean, rstd = torch.native_layer_norm(x, (x.shape[-1],), None, None, eps)
        ctx.save_for_backward(x, mean, rstd, w)
        return torch.matmul(xn, w.transpose(-1, -2)).add_(b)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:
        x, mean, rstd, w = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[1]:
            xn = torch.sub(x, mean).mul_(rstd)
            gw = torch.matmul(gy.transpose(-1, -2), xn)
            del xn
        if ctx.needs_input_grad[2]:
            gb = gy.sum(dim=-2, keepdim=gy.ndim == 3)
        if ctx.needs_input_grad[0]:
            gxn = torch.matmul(gy, w)
            gx = torch.ops.aten.native_layer_norm_backward(
                gxn, x, [x.shape[-1]], mean, rstd, None, None, [True, False, False])[0]
        return gx, gw, gb, None


def norm_linear(x: Tensor, w: Tensor, b: Tensor, eps: float) -> Tensor:
    """Affine-free LayerNorm over the last axis, then a linear map.

    ``x`` (M, C) with ``w`` (O, C), ``b`` (O,); or grouped: ``x`` (G, M, C), ``w`` (G, O, C),
    ``b`` (G, 1, O). Returns (M, O) / (G, M, O).
    """
    return _NormLinear.apply(x, w, b, eps)


class _DWConvGate(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: Tensor, w: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(a, w, b)
        c = a.shape[-1] // 2
        d = F.conv2d(a.permute(0, 3, 1, 2), w, b, padding=1, groups=w.shape[0])
        d = d.permute(0, 2, 3, 1)
        return d[..., :c] * d[..., c:]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gg: Tensor) -> tuple[Tensor | None, ...]:
        a, w, b = ctx.saved_tensors
        c = a.shape[-1] // 2
        a_nchw = a.permute(0, 3, 1, 2)
        d = F.conv2d(a_nchw, w, b, padding=1, groups=w.shape[0]).permute(0, 2, 3, 1)
        gd = torch.empty_like(a)
        torch.mul(gg, d[..., c:], out=gd[..., :c])
        torch.mul(gg, d[..., :c], out=gd[..., c:])
        del d
        ga, gw, gb = torch.ops.aten.convolution_backward(
            gd.permute(0, 3, 1, 2), a_nchw, w, [w.shape[0]], [1, 1], [1, 1], [1, 1], False,
            [0, 0], w.shape[0], list(ctx.needs_input_grad))
        if ga is not None:
            ga = ga.permute(0, 2, 3, 1)
        return ga, gw, gb


def dwconv_gate(a: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """SimpleGate of a 3x3 depthwise conv (padding 1): ``a`` (N, H, W, 2C) channels-last
    contiguous, ``w`` (2C, 1, 3, 3), ``b`` (2C,) -> (N, H, W, C)."""
    return _DWConvGate.apply(a, w, b)


class _GateLinearResidual(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, f: Tensor, w: Tensor, b: Tensor, res: Tensor) -> Tensor:
        ctx.save_for_backward(f, w)
        c = f.shape[-1] // 2
        return torch.addmm(res, f[:, :c] * f[:, c:], w.t()).add_(b)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gout: Tensor) -> tuple[Tensor | None, ...]:
        f, w = ctx.saved_tensors
        c = f.shape[-1] // 2
        f1, f2 = f[:, :c], f[:, c:]
        gf = gw = gb = None
        if ctx.needs_input_grad[1]:
            gw = gout.t() @ (f1 * f2)
        if ctx.needs_input_grad[2]:
            gb = gout.sum(0)
        if ctx.needs_input_grad[0]:
            gg = gout @ w
            gf = torch.empty_like(f)
            torch.mul(gg, f2, out=gf[:, :c])
            torch.mul(gg, f1, out=gf[:, c:])
        return gf, gw, gb, gout


def gate_linear_residual(f: Tensor, w: Tensor, b: Tensor, res: Tensor) -> Tensor:
    """``res + (f[:, :C] * f[:, C:]) @ w.T + b``: ``f`` (M, 2C), ``w`` (O, C), ``b`` (O,),
    ``res`` (M, O) -> (M, O)."""
    return _GateLinearResidual.apply(f, w, b, res)
