"""Optimizer, learning-rate schedule and exponential moving average of weights."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .config import OptimSection, ScheduleSection

__all__ = ["ModelEMA", "build_optimizer", "lr_at", "set_lr"]


def build_optimizer(params: Iterable[nn.Parameter], cfg: OptimSection) -> torch.optim.AdamW:
    """AdamW over ``params`` (decoupled weight decay; the official recipe uses 0)."""
    return torch.optim.AdamW(list(params), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                             weight_decay=cfg.weight_decay)


def lr_at(iteration: int, base_lr: float, cfg: ScheduleSection) -> float:
    """Learning rate of (0-based) ``iteration``.

    Linear warm-up from ``base_lr / warmup_iters`` to ``base_lr`` over ``warmup_iters``, then
    cosine annealing ``eta_min + (base_lr - eta_min) * (1 + cos(pi * k / K)) / 2`` with
    ``k = iteration - warmup_iters`` and ``K = total_iters - warmup_iters`` (no restarts; the
    value at ``k = 0`` is ``base_lr``). Being a pure function of the iteration, the schedule
    needs no state to resume.
    """
    w = cfg.warmup_iters
    if iteration < w:
        return base_lr * (iteration + 1) / w
    if cfg.kind == "constant":
        return base_lr
    span = max(1, cfg.total_iters - w)
    k = min(iteration - w, span)
    return cfg.eta_min + (base_lr - cfg.eta_min) * 0.5 * (1.0 + math.cos(math.pi * k / span))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class ModelEMA:
    """Exponential moving average of a model's floating-point state:
    ``ema = decay * ema + (1 - decay) * current`` after each optimizer step; other tensors
    (integer buffers) are copied. Kept in float32 on the model's device."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow: dict[str, Tensor] = {
            k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
            for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.mul_(self.decay).add_(v.detach().float(), alpha=1.0 - self.decay)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, Tensor]:
        return self.shadow

    def load_state_dict(self, sd: dict[str, Tensor]) -> None:
        missing = set(self.shadow) ^ set(sd)
        if missing:
            raise KeyError(f"EMA state keys differ from the model's: {sorted(missing)[:4]}")
        for k, v in sd.items():
            self.shadow[k].copy_(v)
