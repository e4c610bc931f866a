"""Optimizer, learning-rate schedule and exponential moving average of weights."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .config import OptimSection, ScheduleSection

__all__ = ["ModelEMA", "build_optimizer", "ema_decay_at", "lr_at", "set_lr"]


def build_optimizer(params: Iterable[nn.Parameter], cfg: OptimSection) -> torch.optim.AdamW:
    """AdamW over ``params`` (decoupled weight decay; the official recipe uses 0).

    ``cfg.fused``: torch's fused AdamW (one kernel for all parameters instead of a few per
    tensor); ``None`` uses it when the parameters are on a CUDA device.
    """
    plist = list(params)
    fused = cfg.fused
    if fused is None:
        fused = bool(plist) and all(p.device.type == "cuda" for p in plist)
    return torch.optim.AdamW(plist, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                             weight_decay=cfg.weight_decay, fused=fused or None)


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


def ema_decay_at(decay: float, updates: int) -> float:
    """Decay of the ``updates``-th EMA update (1-based count of updates averaged so far):
    ``min(decay, (1 + n) / (10 + n))``, the warm-up of TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)``. Early updates weigh the current weights
    heavily, so the average never keeps a large share of the random initial weights."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class ModelEMA:
    """Exponential moving average of a model's weights, with a warm-up of the decay.

    Built on :class:`torch.optim.swa_utils.AveragedModel`: the first update copies the
    weights; the ``n``-th later one does ``ema += (1 - d) * (current - ema)`` with
    ``d = ema_decay_at(decay, n)``. Buffers (NAFSSR has none) follow the model. Kept on the
    model's device in the model's dtype (float32 in training).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        from torch.optim.swa_utils import AveragedModel

        self.decay = decay

        def average(avg: list[Tensor], current: list[Tensor], n_averaged: Tensor) -> None:
            d = ema_decay_at(decay, int(n_averaged))
            torch._foreach_lerp_(avg, current, 1.0 - d)

        self.averaged = AveragedModel(model, multi_avg_fn=average, use_buffers=False)

    @property
    def num_updates(self) -> int:
        """Updates so far (0: none; the next update then copies the model)."""
        return int(self.averaged.n_averaged)

    @num_updates.setter
    def num_updates(self, n: int) -> None:
        self.averaged.n_averaged.fill_(int(n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold ``model``'s current weights into the average (after an optimizer step)."""
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged weights under the model's own keys (live tensors; clone to keep)."""
        return dict(self.averaged.module.state_dict())

    def load_state_dict(self, sd: dict[str, Tensor]) -> None:
        """Load averaged weights saved by :meth:`state_dict` (the update count is separate:
        set :attr:`num_updates`)."""
        own = self.averaged.module.state_dict()
        missing = set(own) ^ set(sd)
        if missing:
            raise KeyError(f"EMA state keys differ from the model's: {sorted(missing)[:4]}")
        with torch.no_grad():
            for k, v in sd.items():
                own[k].copy_(v)
