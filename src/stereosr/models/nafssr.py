"""NAFSSR: NAFNet blocks + stereo cross-attention, for stereo image super-resolution.

The main interface is ``model(left, right) -> (sr_left, sr_right)`` on (B, 3, h, w) float
tensors in [0, 1]. :func:`forward_6ch` adapts the official 6-channel form.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import SCAM, DropPath, StereoBlock, to_nchw, to_nhwc
from .memory import check_budget, check_rows, inference_peak_bytes
from .tracing import is_tracing

__all__ = ["NAFSSR", "VARIANTS", "NAFSSRConfig", "build_nafssr", "forward_6ch", "variant_name"]


def _full_precision(x: Tensor) -> contextlib.AbstractContextManager[None]:
    """Autocast off for the enclosed op (the first and last convolutions: a small share of
    the work, and their rounding would reach the output directly)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class NAFSSRConfig:
    """Architecture of a NAFSSR model.

    ``width``: feature channels; ``num_blocks``: stereo blocks; ``scale``: upscaling factor;
    ``drop_path``: stochastic depth rate used in training (no effect in eval mode).
    """

    width: int = 48
    num_blocks: int = 16
    scale: int = 4
    drop_path: float = 0.0
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.width < 2 or self.width % 2:
            raise ValueError(f"width must be an even int >= 2, got {self.width}")
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


#: The published variants: (width, blocks, training drop-path rate).
VARIANTS: dict[str, tuple[int, int, float]] = {
    "T": (48, 16, 0.0),
    "S": (64, 32, 0.1),
    "B": (96, 64, 0.2),
    "L": (128, 128, 0.3),
}


def variant_name(width: int, num_blocks: int) -> str | None:
    """'T'/'S'/'B'/'L' when (width, blocks) is a published variant, else ``None``."""
    for name, (w, n, _) in VARIANTS.items():
        if (w, n) == (width, num_blocks):
            return name
    return None


class NAFSSR(nn.Module):
    """NAFSSR stereo super-resolution network (weights shared between the two views)."""

    def __init__(self, config: NAFSSRConfig | None = None) -> None:
        super().__init__()
        cfg = config or NAFSSRConfig()
        self.config = cfg
        c, s = cfg.width, cfg.scale
        self.intro = nn.Conv2d(cfg.in_channels, c, 3, padding=1)
        self.body = nn.ModuleList(
            [DropPath(cfg.drop_path, StereoBlock(c)) for _ in range(cfg.num_blocks)])
        self.up = nn.Sequential(
            nn.Conv2d(c, cfg.in_channels * s * s, 3, padding=1), nn.PixelShuffle(s))

    @property
    def scale(self) -> int:
        return self.config.scale

    def set_attention_chunk(self, rows: int | None) -> None:
        """Compute cross-attention for at most ``rows`` feature rows at a time (exact).

        ``None`` restores the automatic choice of the memory policy
        (:mod:`stereosr.models.memory`). For one call without changing the model, use
        ``with stereosr.models.memory.attention_chunk(rows): model(left, right)``.
        Raises :class:`~stereosr.errors.InputError` unless ``rows`` is None or a whole number
        >= 1.
        """
        check_rows("rows", rows, 1, allow_none=True)
        for m in self.modules():
            if isinstance(m, SCAM):
                m.chunk_rows = rows

    def set_attention_budget(self, megabytes: float | None) -> None:
        """Memory budget (MiB) of one chunk of W x W attention matrices when chunking is
        automatic and the attention is not fused; ``None`` restores the per-device default.
        Raises :class:`~stereosr.errors.InputError` unless it is None or a finite number > 0."""
        check_budget(megabytes)
        for m in self.modules():
            if isinstance(m, SCAM):
                m.attention_budget_mb = None if megabytes is None else float(megabytes)

    def estimate_memory(self, h: int, w: int, *, batch: int = 1,
                        dtype: torch.dtype | None = None,
                        compute_dtype: torch.dtype | None = None,
                        device: torch.device | str | None = None) -> int:
        """Estimated peak memory (bytes) of one inference pass on ``batch`` (h, w) LR pairs.

        ``dtype``/``device`` default to the model's parameters; ``compute_dtype`` is the
        autocast dtype when mixed precision is used. Attention chunking follows the same policy
        the forward pass uses (any :func:`~stereosr.models.memory.attention_chunk` in effect
        included). See :func:`stereosr.models.memory.inference_peak_bytes`.
        """
        p = self.intro.weight
        chunks = {m.chunk_rows for m in self.modules() if isinstance(m, SCAM)}
        fixed = chunks.pop() if len(chunks) == 1 else None
        return inference_peak_bytes(
            h, w, self.config.width, self.config.scale, batch=batch, dtype=dtype or p.dtype,
            compute_dtype=compute_dtype, device=device or p.device,
            attention=min(batch * h, fixed) if fixed else None)

    def set_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each body block in the backward pass instead of storing its activations.

        Same gradients, far less training memory, roughly one extra forward pass of compute.
        """
        for blk in self.body:
            cast(DropPath, blk).checkpointing = bool(enabled)

    def _upsample_features(self, x: Tensor) -> Tensor:
        """``up`` on (N, h, w, C) features -> contiguous (N, 3, s*h, s*w).

        The pixel shuffle reads the channels-last conv output directly (one copy, which also
        yields a standard contiguous result).
        """
        s = self.config.scale
        with _full_precision(x):
            u = cast(nn.Conv2d, self.up[0])(to_nchw(x))  # channels-last (N, 3*s*s, h, w)
        n, k, h, w = u.shape  # explicit sizes: an empty batch has no -1 to infer
        u = u.permute(0, 2, 3, 1).reshape(n, h, w, k // (s * s), s, s)
        return u.permute(0, 3, 1, 4, 2, 5).reshape(n, k // (s * s), h * s, w * s)

    def feature_names(self) -> tuple[str, ...]:
        """Names :meth:`forward_intermediates` accepts: ``"intro"`` (after the first conv) and
        ``"body.0"`` .. ``"body.{num_blocks - 1}"`` (after each stereo block)."""
        return ("intro", *(f"body.{i}" for i in range(len(self.body))))

    def forward(self, left: Tensor, right: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, h, w) LR views in [0, 1] -> (B, 3, s*h, s*w) SR views."""
        return self._run(left, right, ())[0]

    def forward_intermediates(self, left: Tensor, right: Tensor, layers: Sequence[str]
                              ) -> tuple[tuple[Tensor, Tensor], dict[str, tuple[Tensor, Tensor]]]:
        """The SR views and the features at ``layers`` (see :meth:`feature_names`).

        ``left``, ``right``: (B, 3, h, w) LR views in [0, 1]. Returns ``((sr_left, sr_right),
        {name: (features_left, features_right)})`` with (B, 3, s*h, s*w) views and
        (B, width, h, w) features. Gradients flow as in :meth:`forward` (the features are the
        tensors the forward pass uses, not copies). Raises ``ValueError`` for unknown names.
        """
        valid = self.feature_names()
        for name in layers:
            if name not in valid:
                raise ValueError(f"NAFSSR features are taken at 'intro' or 'body.0'.."
                                 f"'body.{len(self.body) - 1}', got {name!r}")
        return self._run(left, right, tuple(layers))

    def _run(self, left: Tensor, right: Tensor, layers: tuple[str, ...]
             ) -> tuple[tuple[Tensor, Tensor], dict[str, tuple[Tensor, Tensor]]]:
        if left.shape != right.shape:
            raise ValueError(
                f"left and right views must have the same shape, got {tuple(left.shape)} "
                f"and {tuple(right.shape)}")
        if left.ndim != 4 or left.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected (B, {self.config.in_channels}, h, w) tensors, got {tuple(left.shape)}")
        b = left.shape[0]
        # Without autograd the body updates one feature buffer in place (not when features
        # are kept: later blocks would overwrite them).
        inplace = not torch.is_grad_enabled() and not is_tracing() and not layers
        feats: dict[str, tuple[Tensor, Tensor]] = {}

        def keep(name: str, t: Tensor) -> None:
            if name in layers:
                f = to_nchw(t)
                feats[name] = (f[:b], f[b:])

        lr = torch.cat([left, right], dim=0)
        wdt = self.intro.weight.dtype
        if lr.dtype != wdt and lr.is_floating_point() and not torch.is_autocast_enabled(
                lr.device.type):
            lr = lr.to(wdt)  # inputs follow the model's dtype (e.g. after ``model.half()``)
        with _full_precision(lr):
            x = self.intro(lr.contiguous(memory_format=torch.channels_last))
        # (2B, h, w, C), both views stacked, left first; the feature buffer keeps the input's
        # dtype (float32 under autocast: residuals accumulate in full precision).
        x = to_nhwc(x).to(lr.dtype)
        keep("intro", x)
        for i, blk in enumerate(self.body):
            x = cast(DropPath, blk).forward_nhwc(x, inplace)
            keep(f"body.{i}", x)
        out = self._upsample_features(x)
        del x
        base = F.interpolate(lr, scale_factor=self.config.scale, mode="bilinear",
                             align_corners=False)
        if out.dtype != base.dtype:  # autocast: the sum is float32, as the base is
            out = base.add_(out) if inplace else base + out
        else:
            out = out.add_(base) if inplace else out + base
        return (out[:b], out[b:]), {name: feats[name] for name in layers}


def build_nafssr(variant: str = "T", scale: int = 4, *, width: int | None = None,
                 num_blocks: int | None = None, drop_path: float | None = None) -> NAFSSR:
    """Build a NAFSSR preset ('T', 'S', 'B', 'L'), optionally overriding width/blocks/drop path."""
    key = variant.upper()
    if key not in VARIANTS:
        raise ValueError(f"unknown NAFSSR variant {variant!r}; choose one of {sorted(VARIANTS)}")
    w, n, dp = VARIANTS[key]
    cfg = NAFSSRConfig(width=width or w, num_blocks=num_blocks or n, scale=scale,
                       drop_path=dp if drop_path is None else drop_path)
    return NAFSSR(cfg)


def forward_6ch(model: NAFSSR, x: Tensor) -> Tensor:
    """Official interface: (B, 6, h, w) (left RGB, right RGB) -> (B, 6, s*h, s*w)."""
    if x.ndim != 4 or x.shape[1] != 2 * model.config.in_channels:
        raise ValueError(f"expected a (B, 6, h, w) tensor, got {tuple(x.shape)}")
    left, right = x.chunk(2, dim=1)
    sr_l, sr_r = model(left, right)
    return torch.cat([sr_l, sr_r], dim=1)
