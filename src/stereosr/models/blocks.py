"""Building blocks of NAFSSR: LayerNorm2d, NAFBlock, the stereo cross-attention module (SCAM)
and the block-level stochastic depth wrapper.

Module and parameter names follow the official checkpoints exactly, so that a state dict of the
official code loads into these modules with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "layer_norm_2d",
    "LayerNorm2d",
    "simple_gate",
    "NAFBlock",
    "SCAM",
    "StereoBlock",
    "DropPath",
]


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
        x = simple_gate(self.conv2(self.conv1(self.norm1(inp))))
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        x = self.conv5(simple_gate(self.conv4(self.norm2(y))))
        return y + x * self.gamma


def _cross_attention_rows(q_l: Tensor, q_r: Tensor, v_l: Tensor, v_r: Tensor, scale: float
                          ) -> tuple[Tensor, Tensor]:
    """Bidirectional attention along rows.

    All inputs are (N, W, C) with N = batch x rows. Returns (right-to-left, left-to-right)
    features, each (N, W, C).
    """
    attn = torch.bmm(q_l, q_r.transpose(1, 2)) * scale  # (N, W_left, W_right)
    r2l = torch.bmm(torch.softmax(attn, dim=-1), v_r)
    l2r = torch.bmm(torch.softmax(attn.transpose(1, 2), dim=-1), v_l)
    return r2l, l2r


class SCAM(nn.Module):
    """Stereo cross-attention module: each pixel attends to the whole epipolar row of the
    other view.

    ``chunk_rows`` (attribute, default ``None``) bounds memory: the (rows x W x W) attention is
    computed for at most that many image rows (over the batch) at a time. The result is exact.
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

    def forward(self, x_l: Tensor, x_r: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x_l.shape
        # (B, C, H, W) -> (B*H, W, C): one attention problem per image row.
        def rows(t: Tensor) -> Tensor:
            return t.permute(0, 2, 3, 1).reshape(b * h, w, c)

        q_l = rows(self.l_proj1(self.norm_l(x_l)))
        q_r = rows(self.r_proj1(self.norm_r(x_r)))
        v_l = rows(self.l_proj2(x_l))
        v_r = rows(self.r_proj2(x_r))
        n = b * h
        step = n if not self.chunk_rows or self.chunk_rows >= n else max(1, self.chunk_rows)
        if step >= n:
            r2l, l2r = _cross_attention_rows(q_l, q_r, v_l, v_r, self.scale)
        else:
            r2l = torch.empty_like(q_l)
            l2r = torch.empty_like(q_l)
            for s in range(0, n, step):
                e = min(n, s + step)
                r2l[s:e], l2r[s:e] = _cross_attention_rows(
                    q_l[s:e], q_r[s:e], v_l[s:e], v_r[s:e], self.scale)

        def back(t: Tensor) -> Tensor:
            return t.reshape(b, h, w, c).permute(0, 3, 1, 2)

        return x_l + back(r2l) * self.beta, x_r + back(l2r) * self.gamma


class StereoBlock(nn.Module):
    """One NAFSSR body block: a NAFBlock on each view (shared weights), then SCAM."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.blk = NAFBlock(c)
        self.fusion = SCAM(c)

    def forward(self, x_l: Tensor, x_r: Tensor) -> tuple[Tensor, Tensor]:
        if x_l.shape == x_r.shape:
            # One batched call for both views: same weights, half the kernel launches.
            y = self.blk(torch.cat([x_l, x_r], dim=0))
            y_l, y_r = y.chunk(2, dim=0)
        else:  # pragma: no cover - views always match in NAFSSR
            y_l, y_r = self.blk(x_l), self.blk(x_r)
        return self.fusion(y_l, y_r)


class DropPath(nn.Module):
    """Stochastic depth over a whole stereo block.

    In training, with probability ``drop_rate`` the block is skipped for the whole batch (one
    draw per forward, from torch's RNG); when kept, its update is rescaled:
    ``x + (block(x) - x) / (1 - drop_rate)``. Identity wrapper in eval mode.
    """

    def __init__(self, drop_rate: float, module: StereoBlock) -> None:
        super().__init__()
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        self.drop_rate = drop_rate
        self.module = module

    def forward(self, x_l: Tensor, x_r: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and self.drop_rate > 0.0:
            if float(torch.rand(())) < self.drop_rate:
                return x_l, x_r
            y_l, y_r = self.module(x_l, x_r)
            k = 1.0 / (1.0 - self.drop_rate)
            return x_l + k * (y_l - x_l), x_r + k * (y_r - x_r)
        return self.module(x_l, x_r)
