"""Memory-lean autograd functions for training NAFSSR on channels-last (…, C) tensors.

Autograd on the plain op sequence stores every intermediate it will need. These functions
compute the same values but keep fewer or smaller tensors for the backward pass, recomputing
only cheap element-wise work there (never a matrix product):

- :func:`norm_linear`: ``layer_norm(x) @ w.T + b`` keeps the input and per-pixel statistics,
  not the normalised copy (recomputed in one pass),
- :func:`dwconv_gate`: depthwise 3x3 conv followed by SimpleGate keeps the conv input only
  (the conv output is recomputed: a depthwise conv is cheap),
- :func:`gate_linear_residual`: ``res + simple_gate(f) @ w.T + b`` keeps ``f`` only,
- :func:`gated_conv_global_attention`: depthwise conv, gate, global channel attention and
  ``conv3`` with residual, keeping the conv input only,
- :func:`cross_attention`: SCAM's two softmax attentions with residuals and a hand-written
  backward: one shared matrix of exponentials per row, no normalised copies.

They are used when autograd records the forward pass; inference uses in-place code instead.
Double backward is not supported.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "cross_attention",
    "dwconv_gate",
    "gate_linear_residual",
    "gated_conv_global_attention",
    "norm_linear",
]


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


class _GatedConvGlobalAttention(torch.autograd.Function):
    """t + conv3(simple_gate(dwconv(a)) * sca(...)) with global channel attention."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, w2: Tensor, b2: Tensor, wsca: Tensor, bsca: Tensor,
                w3: Tensor, b3: Tensor, t: Tensor) -> Tensor:
        n, h, w, c2 = a.shape
        c = c2 // 2
        d = F.conv2d(a.permute(0, 3, 1, 2), w2, b2, padding=1, groups=w2.shape[0])
        d = d.permute(0, 2, 3, 1)
        g = (d[..., :c] * d[..., c:]).view(n, h * w, c)
        del d
        m = g.mean(dim=1)                              # (N, C)
        sc = torch.addmm(bsca, m, wsca.t())            # (N, C) channel attention
        wn = sc[:, :, None] * w3.t()[None]             # (N, C, Cout)
        y = torch.baddbmm(t.reshape(n, h * w, t.shape[-1]), g, wn).add_(b3)
        ctx.save_for_backward(a, w2, b2, wsca, w3, m, sc)
        return y.view(t.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:
        a, w2, b2, wsca, w3, m, sc = ctx.saved_tensors
        n, h, w, c2 = a.shape
        c = c2 // 2
        a_nchw = a.permute(0, 3, 1, 2)
        d = F.conv2d(a_nchw, w2, b2, padding=1, groups=w2.shape[0]).permute(0, 2, 3, 1)
        g = (d[..., :c] * d[..., c:]).view(n, h * w, c)
        gy3 = gy.reshape(n, h * w, gy.shape[-1])
        p = torch.bmm(g.transpose(1, 2), gy3)          # d loss / d wn: (N, C, Cout)
        gw3 = (sc[:, :, None] * p).sum(0).t()           # (Cout, C)
        gb3 = gy3.sum(dim=(0, 1))
        gsc = (p * w3.t()[None]).sum(-1)                # (N, C)
        gwsca = gsc.t() @ m
        gbsca = gsc.sum(0)
        wn = sc[:, :, None] * w3.t()[None]
        gg = torch.bmm(gy3, wn.transpose(1, 2))         # (N, HW, C)
        gg.add_((gsc @ wsca)[:, None, :], alpha=1.0 / (h * w))
        gg = gg.view(n, h, w, c)
        gd = torch.empty_like(a)
        torch.mul(gg, d[..., c:], out=gd[..., :c])
        torch.mul(gg, d[..., :c], out=gd[..., c:])
        del d, gg
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        ga, gw2, gb2 = torch.ops.aten.convolution_backward(
            gd.permute(0, 3, 1, 2), a_nchw, w2, [w2.shape[0]], [1, 1], [1, 1], [1, 1], False,
            [0, 0], w2.shape[0], mask)
        if ga is not None:
            ga = ga.permute(0, 2, 3, 1)
        return ga, gw2, gb2, gwsca, gbsca, gw3, gb3, gy


def gated_conv_global_attention(a: Tensor, w2: Tensor, b2: Tensor, wsca: Tensor, bsca: Tensor,
                                w3: Tensor, b3: Tensor, t: Tensor) -> Tensor:
    """First half of a NAFBlock after ``conv1``, with global channel attention, keeping only
    ``a`` for backward (the depthwise conv and gate are recomputed there).

    ``a`` (N, H, W, 2C) channels-last contiguous; ``w2`` (2C, 1, 3, 3), ``b2`` (2C,): the
    depthwise conv; ``wsca`` (C, C), ``bsca`` (C,): the attention's 1x1 conv; ``w3`` (Cout, C),
    ``b3`` (Cout,): conv3 (gain folded in); ``t`` (N, H, W, Cout): the residual. Returns
    ``t + conv3(g * sca(mean(g)))`` with ``g = simple_gate(dwconv(a))``, (N, H, W, Cout).
    """
    return _GatedConvGlobalAttention.apply(a, w2, b2, wsca, bsca, w3, b3, t)


class _CrossAttention(torch.autograd.Function):
    """Bidirectional row attention with residuals; see :func:`cross_attention`."""

    @staticmethod
    def forward(ctx: Any, q: Tensor, v: Tensor, x: Tensor, step: int, min_den: float,
                bounded: bool) -> Tensor:
        rows = x.shape[1]
        out = torch.empty_like(x)
        saved: list[tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]] = []
        for s in range(0, rows, step):
            e = min(rows, s + step)
            ql, qr, vl, vr = q[0, s:e], q[1, s:e], v[0, s:e], v[1, s:e]
            attn = torch.bmm(ql, qr.transpose(1, 2))
            if bounded:  # |logits| < 50: exp needs no shift
                ex = attn.exp_()
            else:
                ex = attn.sub_(attn.amax(dim=(1, 2), keepdim=True)).exp_()
            den_l = ex.sum(-1, keepdim=True)
            den_r = ex.sum(1).unsqueeze(-1)
            if bounded or bool(torch.minimum(den_l.amin(), den_r.amin()) >= min_den):
                torch.addcdiv(x[0, s:e], torch.bmm(ex, vr), den_l, out=out[0, s:e])
                torch.addcdiv(x[1, s:e], torch.bmm(ex.transpose(1, 2), vl), den_r,
                              out=out[1, s:e])
                saved.append((ex, None, den_l, den_r))
            else:  # logits too spread out for one shared shift: two plain softmaxes
                attn = torch.bmm(ql, qr.transpose(1, 2))
                p1 = torch.softmax(attn, -1)
                p2 = torch.softmax(attn, 1)
                torch.baddbmm(x[0, s:e], p1, vr, out=out[0, s:e])
                torch.baddbmm(x[1, s:e], p2.transpose(1, 2), vl, out=out[1, s:e])
                saved.append((p1, p2, None, None))
        ctx.chunks = saved
        ctx.step = step
        ctx.save_for_backward(q, v, x, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gout: Tensor) -> tuple[Tensor | None, ...]:
        q, v, x, out = ctx.saved_tensors
        rows = x.shape[1]
        gq = torch.empty_like(q)
        gv = torch.empty_like(v)
        for i, s in enumerate(range(0, rows, ctx.step)):
            e = min(rows, s + ctx.step)
            m1, m2, den_l, den_r = ctx.chunks[i]
            ql, qr, vl, vr = q[0, s:e], q[1, s:e], v[0, s:e], v[1, s:e]
            go_l, go_r = gout[0, s:e], gout[1, s:e]
            if m2 is None:  # shared exponentials: P1 = E / den_l (rows), P2 = E / den_r (cols)
                # Softmax backward needs sum_j P_ij dP_ij = go_i . o_i with o = out - x.
                d1 = (go_l * (out[0, s:e] - x[0, s:e])).sum(-1, keepdim=True)
                d2 = (go_r * (out[1, s:e] - x[1, s:e])).sum(-1, keepdim=True)
                a_l = go_l / den_l
                a_r = go_r / den_r
                # dA = E * (a_l V_r^T - d1/den_l + V_l a_r^T - (d2/den_r)^T)
                ga = torch.baddbmm(d1.div_(den_l).neg_(), a_l, vr.transpose(1, 2))
                ga.baddbmm_(vl, a_r.transpose(1, 2))
                ga.sub_(d2.div_(den_r).transpose(1, 2)).mul_(m1)
                torch.bmm(m1.transpose(1, 2), a_l, out=gv[1, s:e])
                torch.bmm(m1, a_r, out=gv[0, s:e])
            else:  # explicit softmaxes (rare): the textbook softmax backward
                gp1 = torch.bmm(go_l, vr.transpose(1, 2))
                ga = gp1.sub_((gp1 * m1).sum(-1, keepdim=True)).mul_(m1)
                gp2 = torch.bmm(vl, go_r.transpose(1, 2))
                ga.add_(gp2.sub_((gp2 * m2).sum(-2, keepdim=True)).mul_(m2))
                del gp1, gp2
                torch.bmm(m1.transpose(1, 2), go_l, out=gv[1, s:e])
                torch.bmm(m2, go_r, out=gv[0, s:e])
            torch.bmm(ga, qr, out=gq[0, s:e])
            torch.bmm(ga.transpose(1, 2), ql, out=gq[1, s:e])
        ctx.chunks = None
        return gq, gv, gout, None, None, None


def cross_attention(q: Tensor, v: Tensor, x: Tensor, step: int, min_den: float,
                    bounded: bool = False) -> Tensor:
    """SCAM's attention for training: ``out[0] = x[0] + softmax(Q_l Q_r^T) V_r`` and
    ``out[1] = x[1] + softmax(Q_r Q_l^T) V_l`` per row (rows of the stacked views).

    ``q``, ``v``, ``x``: (2, rows, W, C), left view first (attention scale folded into Q).
    ``step`` rows are done at a time (small chunks stay in cache). Keeps one W x W matrix of
    exponentials per row for backward (two softmaxes only for chunks whose normalisers fall
    below ``min_den``). ``bounded``: all logits are known to lie in (-50, 50), so the
    exponentials need no max-shift.
    """
    return _CrossAttention.apply(q, v, x, step, min_den, bounded)
