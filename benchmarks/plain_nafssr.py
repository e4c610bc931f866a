"""A plain, unfused NAFSSR written in the most direct style, as a baseline for benchmarks and a
second code path for equivalence tests.

It computes the same function as :class:`stereosr.models.NAFSSR` and loads the same state dict
(same module and parameter names, ``strict=True``), but makes none of the optimisations:

- LayerNorm2d as an explicit mean / variance formula over channels,
- each view runs through its own NAFBlock call (a Python loop over the two views),
- SCAM with ``permute`` to (B, H, W, C) and ``torch.matmul``, both softmaxes materialised,
- channel-attention pooling with the local (TLC) window as an integral image computed from
  scratch in every block, as the reference converter does (global mean when the map fits
  the window).

Usage::

    from plain_nafssr import PlainNAFSSR
    plain = PlainNAFSSR(width=48, num_blocks=16, scale=4, tlc_kernel=(45, 135))
    plain.load_state_dict(model.state_dict())
    sr_l, sr_r = plain(left, right)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PlainNAFSSR", "plain_from_model"]


class PlainLayerNorm2d(nn.Module):
    """Channel LayerNorm, explicit formula: (x - mean) / sqrt(var + eps) * w + b."""

    def __init__(self, c: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / (var + self.eps).sqrt()
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


class PlainPool(nn.Module):
    """Global average pool, or the local TLC mean when ``kernel`` is set."""

    def __init__(self, kernel: tuple[int, int] | None) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: Tensor) -> Tensor:
        _, _, h, w = x.shape
        if self.kernel is None or (self.kernel[0] >= h and self.kernel[1] >= w):
            return F.adaptive_avg_pool2d(x, 1)
        k1 = min(h, self.kernel[0])
        k2 = min(w, self.kernel[1])
        s = x.cumsum(dim=-1).cumsum(dim=-2)
        s = F.pad(s, (1, 0, 1, 0))
        s1 = s[:, :, :-k1, :-k2]
        s2 = s[:, :, :-k1, k2:]
        s3 = s[:, :, k1:, :-k2]
        s4 = s[:, :, k1:, k2:]
        out = (s4 + s1 - s2 - s3) / (k1 * k2)
        _h, _w = out.shape[2:]
        pad = ((w - _w) // 2, (w - _w + 1) // 2, (h - _h) // 2, (h - _h + 1) // 2)
        return F.pad(out, pad, mode="replicate")


class PlainGate(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return x1 * x2


class PlainNAFBlock(nn.Module):
    def __init__(self, c: int, kernel: tuple[int, int] | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.conv2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.conv3 = nn.Conv2d(c, c, 1)
        self.sca = nn.Sequential(PlainPool(kernel), nn.Conv2d(c, c, 1))
        self.sg = PlainGate()
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.norm1 = PlainLayerNorm2d(c)
        self.norm2 = PlainLayerNorm2d(c)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: Tensor) -> Tensor:
        x = self.norm1(inp)
        x = self.conv1(x)
        x = self.conv2(x)
        x = self.sg(x)
        x = x * self.sca(x)
        x = self.conv3(x)
        y = inp + x * self.beta
        x = self.conv4(self.norm2(y))
        x = self.sg(x)
        x = self.conv5(x)
        return y + x * self.gamma


class PlainSCAM(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.scale = c**-0.5
        self.norm_l = PlainLayerNorm2d(c)
        self.norm_r = PlainLayerNorm2d(c)
        self.l_proj1 = nn.Conv2d(c, c, 1)
        self.r_proj1 = nn.Conv2d(c, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.l_proj2 = nn.Conv2d(c, c, 1)
        self.r_proj2 = nn.Conv2d(c, c, 1)

    def forward(self, x_l: Tensor, x_r: Tensor) -> tuple[Tensor, Tensor]:
        q_l = self.l_proj1(self.norm_l(x_l)).permute(0, 2, 3, 1)   # B, H, W, C
        q_r_t = self.r_proj1(self.norm_r(x_r)).permute(0, 2, 1, 3)  # B, H, C, W
        v_l = self.l_proj2(x_l).permute(0, 2, 3, 1)
        v_r = self.r_proj2(x_r).permute(0, 2, 3, 1)
        attn = torch.matmul(q_l, q_r_t) * self.scale               # B, H, W, W
        f_r2l = torch.matmul(torch.softmax(attn, dim=-1), v_r)
        f_l2r = torch.matmul(torch.softmax(attn.permute(0, 1, 3, 2), dim=-1), v_l)
        f_r2l = f_r2l.permute(0, 3, 1, 2) * self.beta
        f_l2r = f_l2r.permute(0, 3, 1, 2) * self.gamma
        return x_l + f_r2l, x_r + f_l2r


class PlainStereoBlock(nn.Module):
    def __init__(self, c: int, kernel: tuple[int, int] | None) -> None:
        super().__init__()
        self.blk = PlainNAFBlock(c, kernel)
        self.fusion = PlainSCAM(c)

    def forward(self, x_l: Tensor, x_r: Tensor) -> tuple[Tensor, Tensor]:
        outs = [self.blk(x) for x in (x_l, x_r)]
        return self.fusion(outs[0], outs[1])


class PlainDropPath(nn.Module):
    """Holds the block under the name ``module`` (the official state-dict layout)."""

    def __init__(self, module: PlainStereoBlock) -> None:
        super().__init__()
        self.module = module

    def forward(self, x_l: Tensor, x_r: Tensor) -> tuple[Tensor, Tensor]:
        return self.module(x_l, x_r)


class PlainNAFSSR(nn.Module):
    """Plain NAFSSR (no stochastic depth: use it in eval mode or with drop path 0)."""

    def __init__(self, width: int = 48, num_blocks: int = 16, scale: int = 4,
                 tlc_kernel: tuple[int, int] | None = (45, 135)) -> None:
        super().__init__()
        self.scale = scale
        self.intro = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.ModuleList(
            [PlainDropPath(PlainStereoBlock(width, tlc_kernel)) for _ in range(num_blocks)])
        self.up = nn.Sequential(nn.Conv2d(width, 3 * scale * scale, 3, padding=1),
                                nn.PixelShuffle(scale))

    def forward(self, left: Tensor, right: Tensor) -> tuple[Tensor, Tensor]:
        feats = [self.intro(left), self.intro(right)]
        for blk in self.body:
            feats = list(blk(feats[0], feats[1]))
        outs = []
        for x, f in zip((left, right), feats):
            base = F.interpolate(x, scale_factor=self.scale, mode="bilinear",
                                 align_corners=False)
            outs.append(self.up(f) + base)
        return outs[0], outs[1]


def plain_from_model(model: nn.Module, tlc: bool = True) -> PlainNAFSSR:
    """A :class:`PlainNAFSSR` with the same architecture and weights as a ``NAFSSR`` model.

    ``tlc=True`` uses the local pooling window of the model's TLC setting (45 x 135 for the
    default training size), or global pooling when the model has TLC off.
    """
    from stereosr.models.tlc import tlc_kernel, tlc_train_size

    cfg = model.config
    train_size = tlc_train_size(model) if tlc else None
    kernel = tlc_kernel(train_size) if train_size is not None else None
    ref = next(model.parameters())
    plain = PlainNAFSSR(cfg.width, cfg.num_blocks, cfg.scale, kernel).to(ref.device, ref.dtype)
    plain.load_state_dict(model.state_dict(), strict=True)
    return plain.train(model.training)
