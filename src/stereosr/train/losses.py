"""The training objective: a weighted sum of named loss terms built from the config.

Every term is called as ``term(sr_left, sr_right, batch)`` with (B, 3, H, W) SR views and the
batch dict (``hr_left``, ``hr_right``, ``lr_left``, ``lr_right``, all in [0, 1]) and returns a
scalar. :class:`TrainingLoss` returns ``{"total": weighted sum, <name>: unweighted term, ...}``
so that every part is logged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .config import LossTerm

__all__ = ["BuiltTerm", "TrainingLoss", "PixelLoss", "build_training_loss", "LossContext"]


class PixelLoss(nn.Module):
    """L1 / MSE / Charbonnier between SR and HR, averaged over both views and all pixels
    (the official NAFSSR loss is MSE over the 6-channel left+right output)."""

    def __init__(self, kind: str = "mse", eps: float = 1e-3) -> None:
        super().__init__()
        if kind not in ("l1", "mse", "charbonnier"):
            raise ValueError(f"unknown pixel loss {kind!r}")
        self.kind = kind
        self.eps = eps

    def forward(self, sr_l: Tensor, sr_r: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        sr = torch.cat([sr_l, sr_r], dim=1).float()
        hr = torch.cat([batch["hr_left"], batch["hr_right"]], dim=1).float()
        if self.kind == "l1":
            return F.l1_loss(sr, hr)
        if self.kind == "mse":
            return F.mse_loss(sr, hr)
        return torch.sqrt((sr - hr) ** 2 + self.eps**2).mean()


@dataclass
class LossContext:
    """What term builders may need besides their options."""

    scale: int
    device: torch.device
    hr_patches: Callable[[int], Tensor] | None = None  # n -> (n, 3, H, W) HR training patches
    run_dir: str | None = None


@dataclass
class BuiltTerm:
    name: str
    weight: float
    module: nn.Module


class TrainingLoss(nn.Module):
    """Weighted sum of terms; ``forward`` returns ``{"total": ..., name: part, ...}``."""

    def __init__(self, terms: Sequence[BuiltTerm]) -> None:
        super().__init__()
        self.names = [t.name for t in terms]
        self.weights = [float(t.weight) for t in terms]
        self.terms = nn.ModuleDict({t.name: t.module for t in terms})

    def forward(self, sr_l: Tensor, sr_r: Tensor, batch: Mapping[str, Tensor]
                ) -> dict[str, Tensor]:
        parts: dict[str, Tensor] = {}
        total: Tensor | None = None
        for name, weight in zip(self.names, self.weights):
            value = self.terms[name](sr_l, sr_r, batch).float()
            parts[name] = value.detach()
            total = weight * value if total is None else total + weight * value
        assert total is not None
        return {"total": total, **parts}

    def resumable_state(self) -> dict[str, Tensor]:
        """Tensors that a resumed run must restore: every buffer (fitted statistics...) and
        every TRAINABLE parameter of the terms. Frozen parameters (teachers, feature
        networks) are left out: they are rebuilt from their sources."""
        out: dict[str, Tensor] = {}
        for name, module in self.terms.items():
            for k, v in module.named_buffers():
                out[f"{name}.{k}"] = v
            for k, p in module.named_parameters():
                if p.requires_grad:
                    out[f"{name}.{k}"] = p
        return out

    def load_resumable_state(self, sd: Mapping[str, Tensor]) -> None:
        own = self.resumable_state()
        if set(own) != set(sd):
            diff = sorted(set(own) ^ set(sd))
            raise InputError(f"the checkpoint's loss state does not match the configured losses "
                             f"(differs in {diff[:4]}); resume with the run's own config")
        with torch.no_grad():
            for k, v in sd.items():
                own[k].copy_(v)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.terms.parameters() if p.requires_grad]


_PIXEL = {"l1", "mse", "charbonnier"}


def _build_term(term: LossTerm, ctx: LossContext) -> nn.Module:
    opts: dict[str, Any] = dict(term.options)
    kind = term.type.lower()
    if kind in _PIXEL:
        eps = opts.pop("eps", 1e-3)
        if opts:
            raise InputError(f"loss {term.name or term.type!r}: unknown options {sorted(opts)}")
        return PixelLoss(kind, eps=float(eps))
    raise InputError(f"unknown loss type {term.type!r}; use one of "
                     f"{sorted(_PIXEL)}")


def build_training_loss(terms: Sequence[LossTerm], ctx: LossContext) -> TrainingLoss:
    """Build every configured term (teachers are loaded, statistics fitted) on ``ctx.device``."""
    built = []
    for term in terms:
        module = _build_term(term, ctx).to(ctx.device)
        built.append(BuiltTerm(term.name or term.type, term.weight, module))
    return TrainingLoss(built)
