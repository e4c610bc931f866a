"""Multi-process helpers: process-group set-up from ``torchrun``'s environment, collective
shortcuts that are no-ops in a single process, and sharded inference (:func:`shard`,
:func:`gather_to_rank0`).

Under ``torchrun --nproc_per_node=N -m stereosr ...`` the variables ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` are set; without them everything runs as
rank 0 of 1 and no process group is created.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ..errors import InputError

__all__ = [
    "DistInfo",
    "all_reduce_grads",
    "all_reduce_mean",
    "all_true",
    "barrier",
    "cleanup_distributed",
    "env_world",
    "gather_to_rank0",
    "init_distributed",
    "shard",
    "shard_bounds",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialized: bool = False  # True when this module created the process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment, (0, 1, 0) without it."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise InputError("RANK/WORLD_SIZE/LOCAL_RANK must be integers") from None
    return rank, world, local


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("train.device is 'cuda' but CUDA is not available; use 'auto' or 'cpu'")
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        dev = torch.device("cuda", local_rank % n)
        torch.cuda.set_device(dev)
        return dev
    return torch.device("cpu")


def init_distributed(backend: str = "auto", device: str = "auto",
                     timeout_s: int = 1800) -> DistInfo:
    """Join the process group described by the environment (if any) and pick the device.

    ``backend='auto'``: NCCL when the processes use GPUs, gloo on CPU.
    """
    rank, world, local = env_world()
    dev = _pick_device(device, local)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, False)
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, dev, False)
    be = backend
    if be == "auto":
        be = "nccl" if dev.type == "cuda" else "gloo"
    if be == "nccl" and dev.type != "cuda":
        raise InputError("distributed.backend 'nccl' needs GPUs; use 'gloo' on CPU")
    kwargs: dict[str, Any] = {"backend": be, "rank": rank, "world_size": world,
                              "timeout": datetime.timedelta(seconds=timeout_s)}
    if be == "nccl":
        kwargs["device_id"] = dev
    dist.init_process_group(**kwargs)
    return DistInfo(rank, world, local, dev, True)


def cleanup_distributed(info: DistInfo) -> None:
    if info.initialized and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if _active():
        dist.barrier()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over all ranks (returns a new tensor; identity in one process)."""
    if not _active():
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def all_reduce_grads(params: list[torch.nn.Parameter]) -> None:
    """Average the gradients of ``params`` over all ranks (for parameters outside DDP)."""
    if not _active():
        return
    world = dist.get_world_size()
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world)


def all_true(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on every rank."""
    if not _active():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous block when ``n`` items are split over ranks; the first
    ``n % world_size`` ranks get one item more."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard(items: Sequence[T], rank: int | None = None, world_size: int | None = None) -> list[T]:
    """This rank's share of ``items``: contiguous, disjoint, together exactly ``items`` in order.

    ``rank``/``world_size`` default to the current process group (or the torchrun
    environment). Deterministic: depends only on ``len(items)``, rank and world size.
    """
    if rank is None or world_size is None:
        if _active():
            r, w = dist.get_rank(), dist.get_world_size()
        else:
            r, w, _ = env_world()
        rank = r if rank is None else rank
        world_size = w if world_size is None else world_size
    start, stop = shard_bounds(len(items), rank, world_size)
    return list(items[start:stop])


def gather_to_rank0(part: list[T]) -> list[T] | None:
    """Concatenate every rank's ``part`` (in rank order) on rank 0; other ranks get ``None``.

    Objects travel pickled between the run's own processes (``gather_object``); with one
    process, returns ``part``. With NCCL, the current CUDA device must be set.
    """
    if not _active():
        return list(part)
    world = dist.get_world_size()
    rank = dist.get_rank()
    out: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(part, out, dst=0)
    if out is None:
        return None
    merged: list[T] = []
    for chunk in out:
        merged.extend(chunk)
    return merged
