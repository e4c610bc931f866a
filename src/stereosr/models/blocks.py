"""Building blocks of NAFSSR: LayerNorm2d, NAFBlock, the stereo cross-attention module (SCAM)
and the block-level stochastic depth wrapper.

Module and parameter names follow the official checkpoints exactly, so that a state dict of the
official code loads into these modules with ``strict=True``.

Computation layout. The modules accept and return ordinary (N, C, H, W) tensors, but the model
runs them on channels-last data: ``forward_nhwc`` methods take (N, H, W, C) contiguous tensors
holding BOTH views stacked on the batch axis (left first). In that layout a 1x1 convolution is
one matrix product over the channel axis and LayerNorm2d is ``F.layer_norm`` over the last axis,
with no layout copies. Parameters are folded on the fly (cheap: they are small), so the same
code trains and infers:

- a LayerNorm's affine into the 1x1 convolution that follows it,
- ``beta`` / ``gamma`` and the attention scale into the convolutions that produce them,
- in training (global channel attention) the per-sample channel scale into ``conv3``.

With ``inplace=True`` (the model passes it when autograd is off) residual additions are written
into the block input, so inference keeps one feature buffer plus a few temporaries per block.
On the CPU that form runs band by band (a few thousand pixels at a time, see
:func:`stereosr.models.memory.band_rows`): whole-image 1x1 convolutions run from main memory
at well under half the rate of the same products on cache-sized operands.
"""

from __future__ import annotations

import itertools
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .lean_autograd import (
    cross_attention,
    dwconv_gate,
    gate_linear_residual,
    gated_conv_global_attention,
    norm_linear,
)
from .memory import attention_backend, attention_rows, band_rows
from .pooling import LocalAvgPool2d, box_mean, local_mean_full, replicate_to
from .tracing import is_exporting, is_tracing

__all__ = [
    "SCAM",
    "DropPath",
    "LayerNorm2d",
    "NAFBlock",
    "StereoBlock",
    "layer_norm_2d",
    "simple_gate",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def layer_norm_2d(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-6) -> Tensor:
    """Normalise ``x`` (B, C, H, W) over channels at each pixel (population variance).

    Uses the fused ``F.layer_norm`` on a channels-last view, which computes the same statistics
    as the explicit mean/variance formula in one pass.
    """
    y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), weight, bias, eps)
    return y.permute(0, 3, 1, 2)


class LayerNorm2d(nn.Module):
    """Channel LayerNorm for (B, C, H, W) tensors with per-channel affine parameters."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return layer_norm_2d(x, self.weight, self.bias, self.eps)


def simple_gate(x: Tensor) -> Tensor:
    """Split channels into two halves and multiply them: (B, 2C, H, W) -> (B, C, H, W)."""
    a, b = x.chunk(2, dim=1)
    return a * b


# ---------------------------------------------------------------------------------------------
# Channels-last helpers and parameter folding


def to_nhwc(x: Tensor) -> Tensor:
    """(N, C, H, W) -> contiguous (N, H, W, C); free for channels-last tensors."""
    return x.permute(0, 2, 3, 1).contiguous()


def to_nchw(t: Tensor) -> Tensor:
    """(N, H, W, C) -> (N, C, H, W) view (channels-last memory format, no copy)."""
    return t.permute(0, 3, 1, 2)


def _norm(t: Tensor, eps: float) -> Tensor:
    """Affine-free LayerNorm over the channel (last) axis; statistics in float32."""
    if t.dtype in _LOW_PRECISION:
        return F.layer_norm(t.float(), (t.shape[-1],), None, None, eps).to(t.dtype)
    return F.layer_norm(t, (t.shape[-1],), None, None, eps)


def _norm_banded(t: Tensor, eps: float) -> Tensor:
    """:func:`_norm` for the CPU band-by-band inference (no autograd): explicit mean and centred
    (population) variance for float32/float64. On bands of 4096 pixels of 48-64 channels this
    measured 2.3-2.5x faster than the ``F.layer_norm`` kernel on one thread, same precision."""
    if t.dtype in _LOW_PRECISION:
        return _norm(t, eps)
    xc = t - t.mean(-1, keepdim=True)
    return xc.mul_(xc.square().mean(-1, keepdim=True).add_(eps).rsqrt_())


def _wb(conv: nn.Module) -> tuple[Tensor, Tensor]:
    """(weight as (out, in * kh * kw), bias) of a convolution with bias."""
    c = cast(nn.Conv2d, conv)
    return c.weight.flatten(1), cast(Tensor, c.bias)


def _fold_norm(conv: nn.Conv2d, norm: LayerNorm2d, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """Weight (out, in) and bias of ``scale * conv(norm(x))`` acting on the affine-free norm."""
    w, b = _wb(conv)
    wf = w * norm.weight
    bf = torch.addmv(b, w, norm.bias)
    if scale != 1.0:
        wf, bf = wf * scale, bf * scale
    return wf, bf


def _fold_out(conv: nn.Conv2d, gain: Tensor) -> tuple[Tensor, Tensor]:
    """Weight (out, in) and bias of ``conv(x) * gain`` for a per-channel ``gain`` (1, C, 1, 1)."""
    g = gain.flatten()
    w, b = _wb(conv)
    return w * g[:, None], b * g


def _autocast(x: Tensor) -> bool:
    return torch.is_autocast_enabled(x.device.type)


def _compute_dtype(t: Tensor) -> torch.dtype:
    """Dtype of the matrix products on ``t``: the autocast dtype for float32 features under
    autocast (the feature buffer itself stays float32), else ``t``'s dtype."""
    if t.dtype == torch.float32 and _autocast(t):
        return torch.get_autocast_dtype(t.device.type)
    return t.dtype


def _lean(x: Tensor) -> bool:
    """Whether to use the memory-lean autograd functions (not while exporting or under
    autocast, where the plain op sequence is used)."""
    return not is_tracing() and not torch.is_autocast_enabled(x.device.type)


def _linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """``x @ w.T + b`` over the last axis of ``x`` (any leading shape)."""
    y = torch.mm(x.reshape(-1, x.shape[-1]), w.t()).add_(b)
    return y.view(*x.shape[:-1], w.shape[0])


def _add_linear(res: Tensor, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """``res + x @ w.T + b`` over the last axis (new tensor, autograd-safe). Under autocast
    the product runs in the autocast dtype and the sum keeps ``res``'s dtype (a float32
    residual stream stays float32)."""
    if _compute_dtype(res) != res.dtype:
        return res + _linear(x, w, b)
    r2 = res.reshape(-1, res.shape[-1])
    return torch.addmm(r2, x.reshape(-1, x.shape[-1]), w.t()).add_(b).view(res.shape)


def _with_bias_row(w: Tensor, b: Tensor) -> Tensor:
    """(in + 1, out) matrix ``[w.T; b]`` for inputs carrying a trailing column of ones."""
    return torch.cat([w.t(), b[None]], dim=0)


def _bias_column(t: Tensor) -> bool:
    """Whether biases ride in the in-place GEMMs through a ones column (CPU: saves a pass over
    the features). Not on GPUs: a C + 1 wide operand breaks the alignment tensor-core GEMMs
    need, which costs more than a separate bias addition."""
    return t.device.type == "cpu"


def _gate_buffer(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``dtype`` buffer shaped like ``t`` for the gate output: (N, H, W, C + 1) whose last
    channel is 1 when :func:`_bias_column`, else (N, H, W, C)."""
    if not _bias_column(t):
        return torch.empty(t.shape, dtype=dtype, device=t.device)
    buf = torch.empty(*t.shape[:-1], t.shape[-1] + 1, dtype=dtype, device=t.device)
    buf[..., -1] = 1
    return buf


def _mul_replicated_(g: Tensor, s: Tensor) -> None:
    """``g *= replicate_pad(s)`` in place: ``g`` (N, H, W, C), ``s`` (N, oh, ow, C) valid-window
    map. Padding along W is materialised (small), along H done by row ranges (no copy)."""
    h, w = g.shape[1], g.shape[2]
    s = replicate_to(s, 2, w, expand=False)
    oh = s.shape[1]
    if oh == 1:
        g.mul_(s)
        return
    top = (h - oh) // 2
    g[:, top:top + oh].mul_(s)
    if top > 0:
        g[:, :top].mul_(s[:, :1])
    if top + oh < h:
        g[:, top + oh:].mul_(s[:, -1:])


def _addmm_(t: Tensor, buf: Tensor, w: Tensor, b: Tensor) -> None:
    """``t += buf[..., :Cin] @ w.T + b`` over the last axis, in place (``buf`` from
    :func:`_gate_buffer`; with its ones column the bias rides in the product). ``buf`` may be
    in a lower (autocast) dtype than ``t``, whose dtype the sum keeps."""
    c, k = t.shape[-1], buf.shape[-1]
    ones = k == w.shape[1] + 1
    wb = (_with_bias_row(w, b) if ones else w.t()).to(buf.dtype)
    t2, a = t.view(-1, c), buf.view(-1, k)
    if buf.dtype == t.dtype:
        t2.addmm_(a, wb)
    else:
        t2.add_(torch.mm(a, wb))
    if not ones:
        t2.add_(b.to(t.dtype))


# ---------------------------------------------------------------------------------------------
# NAFBlock


class NAFBlock(nn.Module):
    """Nonlinear-activation-free block: gated depthwise conv branch + gated channel MLP.

    ``sca`` is ``Sequential(pool, conv)``; the pool is a global average pool for training and is
    swapped for a local one by :func:`stereosr.models.tlc.enable_tlc` for inference.
    """

    def __init__(self, c: int) -> None:
        super().__init__()
        dw = 2 * c
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        ffn = 2 * c
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        return to_nchw(self.forward_nhwc(to_nhwc(inp)))

    def forward_nhwc(self, t: Tensor, inplace: bool = False) -> Tensor:
        """(N, H, W, C) contiguous -> (N, H, W, C). ``inplace`` overwrites ``t`` (no autograd)."""
        if inplace:
            return self._forward_inplace(t)
        return self._forward_autograd(t)

    def _dwconv(self, t: Tensor) -> Tensor:
        """conv2(conv1(norm1(t))) for (N, H, W, C) ``t`` -> (N, H, W, 2C) (strided view)."""
        w1, b1 = _fold_norm(self.conv1, self.norm1)
        a = _linear(_norm(t, self.norm1.eps), w1, b1)
        d = F.conv2d(to_nchw(a), self.conv2.weight, _wb(self.conv2)[1], padding=1,
                     groups=self.conv2.groups)
        return d.permute(0, 2, 3, 1)

    def _kernel(self) -> tuple[int, int]:
        return cast(LocalAvgPool2d, self.sca[0]).kernel

    def _pool_kind(self) -> str:
        pool = self.sca[0]
        if isinstance(pool, LocalAvgPool2d):
            return "local"
        if isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size in (1, (1, 1)):
            return "global"
        return "other"

    def _local_scale(self, g: Tensor) -> Tensor:
        """Channel attention from local means: (N, oh, ow, C) over the valid windows."""
        m = box_mean(g, self._kernel(), dims=(1, 2))
        return F.linear(m, *_wb(self.sca[1]))

    def _global_scale(self, g: Tensor) -> Tensor:
        """Channel attention from global means: (N, C)."""
        m = g.float().mean(dim=(1, 2)).to(g.dtype) if g.dtype in _LOW_PRECISION \
            else g.mean(dim=(1, 2))
        return F.linear(m, *_wb(self.sca[1]))

    def _forward_autograd(self, t: Tensor) -> Tensor:
        """Out-of-place form (training, export): saves few large tensors for backward."""
        n, h, w, c = t.shape
        lean = _lean(t)
        w1, b1 = _fold_norm(self.conv1, self.norm1)
        w3, b3 = _fold_out(self.conv3, self.beta)
        kind = self._pool_kind()
        if lean:
            a = norm_linear(t.reshape(-1, c), w1, b1, self.norm1.eps).view(n, h, w, 2 * c)
            if kind == "global":
                y = gated_conv_global_attention(a, self.conv2.weight, _wb(self.conv2)[1],
                                                *_wb(self.sca[1]), w3, b3, t)
                return self._ffn_autograd(y, lean)
            g = dwconv_gate(a, self.conv2.weight, _wb(self.conv2)[1])
            del a
        else:
            d = self._dwconv(t)
            g = d[..., :c] * d[..., c:]
            del d
        if kind == "global" and not is_tracing():
            # The per-sample channel scale folds into conv3: one batched product.
            wn = self._global_scale(g)[:, :, None] * w3.t()[None]  # (N, Cin, Cout)
            if _compute_dtype(t) != t.dtype:  # autocast: keep the float32 residual
                y = t + torch.bmm(g.reshape(n, -1, c), wn).add_(b3).view(t.shape)
            else:
                y = torch.baddbmm(t.reshape(n, -1, c), g.reshape(n, -1, c), wn).add_(b3)
                y = y.view(t.shape)
        else:
            if kind == "local" and is_tracing():
                s = F.linear(local_mean_full(g, self._kernel(), dims=(1, 2)), *_wb(self.sca[1]))
            elif kind == "local":
                s = replicate_to(replicate_to(self._local_scale(g), 2, w, expand=False), 1, h,
                                 expand=False)
            elif kind == "global":
                s = self._global_scale(g)[:, None, None]
            else:
                s = to_nhwc(self.sca(to_nchw(g)))
            y = _add_linear(t, g * s, w3, b3)
        del g
        return self._ffn_autograd(y, lean)

    def _ffn_autograd(self, y: Tensor, lean: bool) -> Tensor:
        """Second half of the block: ``y + conv5(gate(conv4(norm2(y)))) * gamma``."""
        c = y.shape[-1]
        w4, b4 = _fold_norm(self.conv4, self.norm2)
        w5, b5 = _fold_out(self.conv5, self.gamma)
        if lean:
            y2 = y.view(-1, c)
            f = norm_linear(y2, w4, b4, self.norm2.eps)
            return gate_linear_residual(f, w5, b5, y2).view(y.shape)
        f = _linear(_norm(y, self.norm2.eps), w4, b4)
        return _add_linear(y, f[..., :c] * f[..., c:], w5, b5)

    def _forward_inplace(self, t: Tensor) -> Tensor:
        """In-place form (no autograd): residuals accumulate into ``t``; on the CPU the biases of
        conv3/conv5 ride in the GEMMs through a ones column next to the gate output."""
        n, c = t.shape[0], t.shape[-1]
        cd = _compute_dtype(t)
        if _bias_column(t) and cd == t.dtype:
            return self._forward_banded(t)
        d = self._dwconv(t)
        buf = _gate_buffer(t, cd)  # allocated after the conv: lower peak memory
        k = buf.shape[-1]
        g = buf[..., :c]
        torch.mul(d[..., :c], d[..., c:], out=g)
        del d
        w3, b3 = _fold_out(self.conv3, self.beta)
        kind = self._pool_kind()
        if kind == "global":
            sc = self._global_scale(g)
            wn = sc[:, :, None] * w3.t()[None]
            if k > c:
                wn = torch.cat([wn, b3.expand(n, 1, c)], dim=1)
            wn = wn.to(cd)
            if cd == t.dtype:
                t.view(n, -1, c).baddbmm_(buf.view(n, -1, k), wn)
            else:  # autocast: product in the compute dtype, float32 residual
                t.view(n, -1, c).add_(torch.bmm(buf.view(n, -1, k), wn))
            if k == c:
                t.add_(b3.to(t.dtype))
        else:
            if kind == "local":
                _mul_replicated_(g, self._local_scale(g))
            else:
                g.mul_(to_nhwc(self.sca(to_nchw(g))))
            _addmm_(t, buf, w3, b3)
        w4, b4 = _fold_norm(self.conv4, self.norm2)
        f = _linear(_norm(t, self.norm2.eps), w4, b4)
        torch.mul(f[..., :c], f[..., c:], out=g)
        del f
        w5, b5 = _fold_out(self.conv5, self.gamma)
        _addmm_(t, buf, w5, b5)
        return t


    def _forward_banded(self, t: Tensor) -> Tensor:
        """CPU in-place form, band by band: norm1, conv1, the depthwise conv (each band with a
        one-row halo on both sides, zero rows at the image border as ``padding=1`` gives) and
        the gate fill the gate map; the channel attention then needs the whole map (local or
        global means); conv3, norm2, conv4, the gate and conv5 follow band by band again. The
        arithmetic per pixel is that of the whole-image form; only the temporaries shrink."""
        n, h, w, c = t.shape
        rows = band_rows(1, w)
        buf = _gate_buffer(t, t.dtype)  # (n, h, w, c + 1): gate output and a ones column
        g = buf[..., :c]
        w1, b1 = _fold_norm(self.conv1, self.norm1)
        wd, bd = self.conv2.weight, _wb(self.conv2)[1]
        zero = t.new_zeros(1, 1, w, 2 * c)
        for i, r0 in itertools.product(range(n), range(0, h, rows)):  # contiguous bands
            r1 = min(h, r0 + rows)
            a0, a1 = max(0, r0 - 1), min(h, r1 + 1)
            a = _linear(_norm_banded(t[i:i + 1, a0:a1], self.norm1.eps), w1, b1)
            if a0 == r0 or a1 == r1:  # image border: zero rows stand for the padding
                a = torch.cat([zero] * (a0 == r0) + [a] + [zero] * (a1 == r1), dim=1)
            d = F.conv2d(to_nchw(a), wd, bd, padding=(0, 1), groups=2 * c).permute(0, 2, 3, 1)
            torch.mul(d[..., :c], d[..., c:], out=g[i:i + 1, r0:r1])
            del a, d
        kind = self._pool_kind()
        if kind == "local":
            _mul_replicated_(g, self._local_scale(g))
        elif kind == "global":
            g.mul_(self._global_scale(g)[:, None, None])
        else:
            g.mul_(to_nhwc(self.sca(to_nchw(g))))
        w3b = _with_bias_row(*_fold_out(self.conv3, self.beta))
        w4, b4 = _fold_norm(self.conv4, self.norm2)
        w4t = w4.t()
        w5b = _with_bias_row(*_fold_out(self.conv5, self.gamma))
        t2, g2 = t.view(-1, c), buf.view(-1, c + 1)
        m = t2.shape[0]
        step = rows * w
        gate = t.new_empty(min(step, m), c + 1)  # FFN gate output with its ones column
        gate[:, c] = 1
        for p0 in range(0, m, step):
            p1 = min(m, p0 + step)
            tb = t2[p0:p1]
            tb.addmm_(g2[p0:p1], w3b)
            f = torch.mm(_norm_banded(tb, self.norm2.eps), w4t).add_(b4)
            gb = gate[:p1 - p0]
            torch.mul(f[:, :c], f[:, c:], out=gb[:, :c])
            tb.addmm_(gb, w5b)
        return t


# ---------------------------------------------------------------------------------------------
# SCAM

# A chunk of attention rows falls back to per-row softmax when a normaliser drops below this
# (the shared-shift exponentials could then lose precision; see SCAM._attend).
_MIN_NORMALISER = 1e-25


# Logits within +-_EXP_BOUND need no max-shift before exp: e^50 times any realistic row sum
# stays far from float32 overflow and e^-50 is a normal number (full relative precision).
_EXP_BOUND = 50.0


def _logits_bounded(q_l: Tensor, q_r: Tensor) -> bool:
    """Whether every logit q_l[i] . q_r[j] is below ``_EXP_BOUND`` in magnitude, from the
    Cauchy-Schwarz bound max|q_l| * max|q_r| (one pass over Q, no W x W work)."""
    with torch.no_grad():
        bound = (torch.linalg.vector_norm(q_l, dim=-1).amax()
                 * torch.linalg.vector_norm(q_r, dim=-1).amax())
    return bool(bound < _EXP_BOUND)


def _softmax(a: Tensor, dim: int) -> Tensor:
    """Softmax with float32 statistics for half-precision logits."""
    if a.dtype in _LOW_PRECISION:
        return torch.softmax(a, dim, dtype=torch.float32).to(a.dtype)
    return torch.softmax(a, dim)


def _sdpa_pair(q_l: Tensor, q_r: Tensor, v_l: Tensor, v_r: Tensor) -> tuple[Tensor, Tensor]:
    """Both attention directions of (rows, W, C) tensors on the fused attention kernels:
    right-to-left (queries left, keys right, values right) and left-to-right (queries right,
    keys left, values left). The scale is already folded into ``q_l``; the 4-D (1, rows, W, C)
    form (rows as heads) is what the fused CUDA kernels accept."""
    r2l = F.scaled_dot_product_attention(q_l[None], q_r[None], v_r[None], scale=1.0)[0]
    l2r = F.scaled_dot_product_attention(q_r[None], q_l[None], v_l[None], scale=1.0)[0]
    return r2l, l2r


class SCAM(nn.Module):
    """Stereo cross-attention module: each pixel attends to the whole epipolar row of the
    other view.

    Per row, A = Q_l Q_r^T * c**-0.5; right-to-left is softmax(A over right positions) V_r,
    left-to-right softmax(A^T over left positions) V_l, i.e. two ordinary attentions. How they
    are computed depends on the device and dtype (:mod:`stereosr.models.memory`):

    - off the CPU and in half precision: ``scaled_dot_product_attention`` (fused kernels with
      float32 softmax statistics; on CUDA whole images at once, no W x W matrix held);
    - on the CPU in float32: both softmaxes share one matrix of exponentials
      ``E = exp(A - shift)`` per row (no shift when all logits are known to be small, else the
      matrix maximum); the normalisers are the row and column sums of ``E`` and the division
      happens on the (W x C) results. If a row or column of ``E`` underflows (logits spread
      over more than ~57 nats), that chunk is redone with two ordinary softmaxes;
    - while exporting: two explicit softmaxes over all rows (a static graph); under
      ``torch.compile``: SDPA on whole images.

    Rows are processed in chunks: ``chunk_rows`` (attribute) fixes the rows per chunk; with
    ``None`` the memory policy decides (whole images for fused attention, else rows whose
    W x W matrices fit ``attention_budget_mb``, default per device). Exact either way.
    """

    def __init__(self, c: int) -> None:
        super().__init__()
        self.scale = c**-0.5
        self.norm_l = LayerNorm2d(c)
        self.norm_r = LayerNorm2d(c)
        self.l_proj1 = nn.Conv2d(c, c, 1)
        self.r_proj1 = nn.Conv2d(c, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.l_proj2 = nn.Conv2d(c, c, 1)
        self.r_proj2 = nn.Conv2d(c, c, 1)
        self.chunk_rows: int | None = None
        self.attention_budget_mb: float | None = None

    def forward(self, x_l: Tensor, x_r: Tensor) -> tuple[Tensor, Tensor]:
        """Two (B, C, H, W) views -> two (B, C, H, W) views."""
        b = x_l.shape[0]
        out = to_nchw(self.forward_nhwc(to_nhwc(torch.cat([x_l, x_r], dim=0))))
        return out[:b], out[b:]

    def _rows_per_chunk(self, n: int, w: int, q: Tensor) -> int:
        return attention_rows(n, w, q.shape[-1], q.device, q.dtype, self.chunk_rows,
                              self.attention_budget_mb)

    def _folded(self) -> tuple[tuple[Tensor, Tensor], ...]:
        """(weight, bias) of the four projections with their norms and gains folded in:
        Q_l (attention scale folded in), Q_r (both on the affine-free norm), V_l (times
        ``gamma``: it feeds the right output), V_r (times ``beta``: it feeds the left one)."""
        return (_fold_norm(self.l_proj1, self.norm_l, self.scale),
                _fold_norm(self.r_proj1, self.norm_r),
                _fold_out(self.l_proj2, self.gamma), _fold_out(self.r_proj2, self.beta))

    def _projections(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Q (2, B*H*W, C) of both views (attention scale folded into the left one) and V
        (2, B*H*W, C), each pre-multiplied by the gain of the output it feeds."""
        c = x.shape[-1]
        x3 = x.reshape(2, -1, c)
        (wq_l, bq_l), (wq_r, bq_r), (wv_l, bv_l), (wv_r, bv_r) = self._folded()
        wq = torch.stack([wq_l, wq_r])
        bq = torch.stack([bq_l, bq_r])[:, None]
        if self.norm_l.eps != self.norm_r.eps:  # pragma: no cover - same eps in NAFSSR
            raise ValueError("SCAM expects norm_l and norm_r to share eps")
        if _lean(x):
            q = norm_linear(x3, wq, bq, self.norm_l.eps)
        else:
            xn = _norm(x, self.norm_l.eps).reshape(2, -1, c)
            q = torch.bmm(xn, wq.transpose(1, 2)).add_(bq)
            del xn
        wv = torch.stack([wv_l.t(), wv_r.t()])
        bv = torch.stack([bv_l, bv_r])[:, None]
        v = torch.bmm(x3, wv).add_(bv)
        return q, v

    @staticmethod
    def _attend(q_l: Tensor, q_r: Tensor, v_l: Tensor, v_r: Tensor, inplace: bool,
                bounded: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        """Unnormalised cross-attention of one chunk of rows: (num_l, den_l, num_r, den_r),
        numerators (rows, W, C) and normalisers (rows, W, 1); ``None`` if a normaliser
        underflows (the caller then uses ordinary softmaxes). ``bounded``: all logits are
        known to lie in (-50, 50), so ``exp`` needs no shift."""
        attn = torch.bmm(q_l, q_r.transpose(1, 2))  # (rows, W_left, W_right)
        if bounded:
            e = attn.exp_() if inplace else torch.exp(attn)
        else:
            shift = attn.detach().amax(dim=(1, 2), keepdim=True)
            e = attn.sub_(shift).exp_() if inplace else torch.exp(attn - shift)
        num_l = torch.bmm(e, v_r)                  # sums over right positions
        num_r = torch.bmm(e.transpose(1, 2), v_l)  # sums over left positions
        den_l = e.sum(-1, keepdim=True)            # (rows, W_left, 1)
        den_r = e.sum(1).unsqueeze(-1)             # (rows, W_right, 1)
        if not bounded and bool(torch.minimum(den_l.amin(), den_r.amin()) < _MIN_NORMALISER):
            return None
        return num_l, den_l, num_r, den_r

    @staticmethod
    def _attend_softmax(q_l: Tensor, q_r: Tensor, v_l: Tensor, v_r: Tensor
                        ) -> tuple[Tensor, Tensor]:
        """Cross-attention of one chunk with two explicit softmaxes: (r2l, l2r)."""
        attn = torch.bmm(q_l, q_r.transpose(1, 2))
        r2l = torch.bmm(_softmax(attn, -1), v_r)
        l2r = torch.bmm(_softmax(attn, 1).transpose(1, 2), v_l)
        return r2l, l2r

    def _forward_banded(self, x: Tensor) -> Tensor:
        """CPU in-place form: per chunk of rows, the projections of both views and then the
        shared-exponential attention (ordinary softmaxes where a normaliser underflows),
        added into ``x``. Rows are independent, so a chunk's projections are all it needs."""
        b2, h, w, c = x.shape
        n = (b2 // 2) * h
        (wq_l, bq_l), (wq_r, bq_r), (wv_l, bv_l), (wv_r, bv_r) = self._folded()
        step = self._rows_per_chunk(n, w, x)
        views = x.view(2, n, w, c)
        for s in range(0, n, step):
            xl, xr = views[0, s:s + step], views[1, s:s + step]
            ql = _linear(_norm_banded(xl, self.norm_l.eps), wq_l, bq_l)
            qr = _linear(_norm_banded(xr, self.norm_r.eps), wq_r, bq_r)
            self._add_attention_(ql, qr, _linear(xl, wv_l, bv_l), _linear(xr, wv_r, bv_r),
                                 xl, xr, _logits_bounded(ql, qr))
        return x

    def _add_attention_(self, ql: Tensor, qr: Tensor, vl: Tensor, vr: Tensor, xl: Tensor,
                        xr: Tensor, bounded: bool) -> None:
        """Add one chunk's shared-exponential attention into ``xl`` / ``xr`` in place
        (ordinary softmaxes where a normaliser underflows)."""
        res = self._attend(ql, qr, vl, vr, True, bounded)
        if res is None:
            r2l, l2r = self._attend_softmax(ql, qr, vl, vr)
            xl.add_(r2l)
            xr.add_(l2r)
        else:
            num_l, den_l, num_r, den_r = res
            xl.addcdiv_(num_l, den_l)
            xr.addcdiv_(num_r, den_r)

    def forward_nhwc(self, x: Tensor, inplace: bool = False) -> Tensor:
        """Stacked views (2B, H, W, C) contiguous, left first -> same layout.

        ``inplace`` writes the result into ``x`` (no autograd).
        """
        b2, h, w, c = x.shape
        n = (b2 // 2) * h
        # Band by band only where the products run in the buffer's own dtype: under autocast
        # Q is half precision and takes SDPA (shared exponentials would overflow in fp16).
        if inplace and _compute_dtype(x) == x.dtype and attention_backend(
                x.device, x.dtype, is_exporting(), is_tracing()) == "shared":
            return self._forward_banded(x)
        q, v = self._projections(x)
        # unbind (not indexing): its backward stacks instead of zero-filling full tensors.
        q_l, q_r = q.view(2, n, w, c).unbind(0)
        v_l, v_r = v.view(2, n, w, c).unbind(0)
        x_l, x_r = x.view(2, n, w, c).unbind(0)
        tracing = is_tracing()
        backend = attention_backend(q.device, q.dtype, is_exporting(), tracing)
        if backend == "explicit":  # one chunk, explicit softmaxes: a static graph for export
            r2l, l2r = self._attend_softmax(q_l, q_r, v_l, v_r)
            return torch.cat([x_l + r2l, x_r + l2r]).view(b2, h, w, c)
        if tracing:  # compiling: whole images on the fused kernels, one graph
            r2l, l2r = _sdpa_pair(q_l, q_r, v_l, v_r)
            return torch.cat([x_l + r2l, x_r + l2r]).view(b2, h, w, c)
        step = self._rows_per_chunk(n, w, q)
        bounded = backend == "shared" and _logits_bounded(q_l, q_r)
        if backend == "shared" and not inplace and _lean(x):
            out = cross_attention(q.view(2, n, w, c), v.view(2, n, w, c),
                                  x.view(2, n, w, c), step, _MIN_NORMALISER, bounded)
            return out.view(b2, h, w, c)
        outs_l: list[Tensor] = []
        outs_r: list[Tensor] = []
        for s in range(0, n, step):
            e = min(n, s + step)
            parts: tuple[Tensor, ...] = (q_l, q_r, v_l, v_r, x_l, x_r)
            if step < n:  # whole tensors for a single chunk (no slicing views)
                parts = tuple(t[s:e] for t in parts)
            ql, qr, vl, vr, xl, xr = parts
            if inplace and backend == "shared":
                self._add_attention_(ql, qr, vl, vr, xl, xr, bounded)
                continue
            res = self._attend(ql, qr, vl, vr, False, bounded) if backend == "shared" \
                else None
            if res is not None:
                num_l, den_l, num_r, den_r = res
                outs_l.append(torch.addcdiv(xl, num_l, den_l))
                outs_r.append(torch.addcdiv(xr, num_r, den_r))
            else:
                if backend == "sdpa":
                    r2l, l2r = _sdpa_pair(ql, qr, vl, vr)
                else:
                    r2l, l2r = self._attend_softmax(ql, qr, vl, vr)
                if inplace:
                    xl.add_(r2l)
                    xr.add_(l2r)
                else:
                    outs_l.append(xl + r2l)
                    outs_r.append(xr + l2r)
            del res
        if inplace:
            return x
        return torch.cat(outs_l + outs_r).view(b2, h, w, c)


# ---------------------------------------------------------------------------------------------
# Stereo block and stochastic depth


class StereoBlock(nn.Module):
    """One NAFSSR body block: a NAFBlock on each view (shared weights), then SCAM."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.blk = NAFBlock(c)
        self.fusion = SCAM(c)

    def forward(self, x_l: Tensor, x_r: Tensor) -> tuple[Tensor, Tensor]:
        """Two (B, C, H, W) views -> two (B, C, H, W) views."""
        b = x_l.shape[0]
        out = to_nchw(self.forward_nhwc(to_nhwc(torch.cat([x_l, x_r], dim=0))))
        return out[:b], out[b:]

    def forward_nhwc(self, x: Tensor, inplace: bool = False) -> Tensor:
        """Stacked views (2B, H, W, C), left first -> same layout."""
        return self.fusion.forward_nhwc(self.blk.forward_nhwc(x, inplace), inplace)


class DropPath(nn.Module):
    """Stochastic depth over a whole stereo block.

    In training, with probability ``drop_rate`` the block is skipped for the whole batch (one
    draw per forward, from torch's RNG); when kept, its update is rescaled:
    ``x + (block(x) - x) / (1 - drop_rate)``. Identity wrapper in eval mode.

    ``checkpointing = True`` recomputes the block's activations in the backward pass instead of
    storing them (less memory, about one extra forward of compute).
    """

    def __init__(self, drop_rate: float, module: StereoBlock) -> None:
        super().__init__()
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        self.drop_rate = drop_rate
        self.module = module
        self.checkpointing = False

    def forward(self, x_l: Tensor, x_r: Tensor) -> tuple[Tensor, Tensor]:
        """Two (B, C, H, W) views -> two (B, C, H, W) views."""
        b = x_l.shape[0]
        out = to_nchw(self.forward_nhwc(to_nhwc(torch.cat([x_l, x_r], dim=0))))
        return out[:b], out[b:]

    def _run(self, x: Tensor, inplace: bool) -> Tensor:
        if self.checkpointing and torch.is_grad_enabled() and x.requires_grad:
            return checkpoint(self.module.forward_nhwc, x, False, use_reentrant=False)
        return self.module.forward_nhwc(x, inplace)

    def forward_nhwc(self, x: Tensor, inplace: bool = False) -> Tensor:
        """Stacked views (2B, H, W, C), left first -> same layout."""
        if self.training and self.drop_rate > 0.0:
            if float(torch.rand(())) < self.drop_rate:
                return x
            y = self._run(x, False)
            return x + (y - x) * (1.0 / (1.0 - self.drop_rate))
        return self._run(x, inplace)
