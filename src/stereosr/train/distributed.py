"""Training-only collectives: gradient and metric averaging and agreement between ranks.

Process-group set-up, the device picker and sharding live in :mod:`stereosr.runtime` (shared
with the commands). Each helper is a no-op in a single process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..runtime import distributed_active

__all__ = ["all_reduce_grads", "all_reduce_mean", "all_true"]


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over all ranks (returns a new tensor; identity in one process)."""
    if not distributed_active():
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def all_reduce_grads(params: list[torch.nn.Parameter]) -> None:
    """Average the gradients of ``params`` over all ranks (for parameters outside DDP)."""
    if not distributed_active():
        return
    world = dist.get_world_size()
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world)


def all_true(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on every rank."""
    if not distributed_active():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())
