"""Where the work runs: the one device picker and the multi-process helpers shared by training
and by the commands (``upscale``, ``evaluate``).

Under ``torchrun --nproc_per_node=N -m stereosr ...`` the variables ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` are set; without them everything runs as
rank 0 of 1 and no process group is created. The collectives are torch's own
(``torch.distributed``); this module only decides the device, joins the group the environment
describes, and splits work into deterministic contiguous shards.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .errors import InputError, StereoSRError

__all__ = [
    "DistInfo",
    "barrier",
    "cleanup_distributed",
    "distributed_active",
    "env_world",
    "gather_to_rank0",
    "init_distributed",
    "resolve_device",
    "run_sharded",
    "shard",
    "shard_bounds",
]

T = TypeVar("T")
R = TypeVar("R")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and bool(mps.is_available())


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """The torch device for a request: ``None``/``"auto"`` -> CUDA if available, else MPS, else
    CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` and ``"mps"`` are honoured as given.

    A CUDA device without an index becomes ``cuda:local_rank % device_count`` (one GPU per
    process under torchrun; ``cuda:0`` otherwise).

    Raises:
        InputError: the requested kind of device is not available, or the name is unknown.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            dev = torch.device("cuda")
        elif _mps_available():
            dev = torch.device("mps")
        else:
            dev = torch.device("cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or "
                             "'mps'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {str(device)!r} requested but CUDA is not available; use "
                             "'cpu' or 'auto'")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    elif dev.type == "mps" and not _mps_available():
        raise InputError(f"device {str(device)!r} requested but MPS is not available; use 'cpu' "
                         "or 'auto'")
    return dev


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialized: bool = False  # True when init_distributed created the process group

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


def init_distributed(backend: str = "auto", device: str | torch.device | None = "auto",
                     timeout_s: int = 1800) -> DistInfo:
    """Pick this process's device (:func:`resolve_device`) and join the process group that
    the environment describes (none in a single process; an existing group is reused).

    ``backend='auto'``: NCCL when the processes use CUDA, gloo otherwise.

    Raises:
        InputError: an unavailable device, or NCCL asked for without CUDA.
    """
    rank, world, local = env_world()
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, False)
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, dev, False)
    be = backend
    if be == "auto":
        be = "nccl" if dev.type == "cuda" else "gloo"
    if be == "nccl" and dev.type != "cuda":
        raise InputError("the 'nccl' backend needs CUDA devices; use backend 'gloo' on "
                         f"{dev.type}")
    kwargs: dict[str, Any] = {"backend": be, "rank": rank, "world_size": world,
                              "timeout": datetime.timedelta(seconds=timeout_s)}
    if be == "nccl":
        kwargs["device_id"] = dev
    dist.init_process_group(**kwargs)
    return DistInfo(rank, world, local, dev, True)


def cleanup_distributed(info: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if info.initialized and dist.is_initialized():
        dist.destroy_process_group()


def distributed_active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if distributed_active():
        dist.barrier()


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
        if distributed_active():
            r, w = dist.get_rank(), dist.get_world_size()
        else:
            r, w, _ = env_world()
        rank = r if rank is None else rank
        world_size = w if world_size is None else world_size
    start, stop = shard_bounds(len(items), rank, world_size)
    return list(items[start:stop])


def gather_to_rank0(part: list[T]) -> list[T] | None:
    """Concatenate every rank's ``part`` (in rank order) on rank 0; other ranks get ``None``.

    Objects travel pickled between the run's own processes (``torch.distributed.gather_object``);
    with one process, returns ``part``. With NCCL, the current CUDA device must be set.
    """
    if not distributed_active():
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


def run_sharded(items: Sequence[T], work: Callable[[list[T]], R]) -> list[R] | None:
    """``work`` on this rank's :func:`shard` of ``items``; every rank's result on rank 0.

    In a single process: ``[work(list(items))]``, errors propagate. In a process group: rank 0
    gets the results of all ranks in rank order, other ranks get ``None``; a
    :class:`StereoSRError` raised on any rank is raised again on rank 0 (the first one, in rank
    order) after every rank has finished, so no rank waits forever on a failed one.
    """
    if not distributed_active():
        return [work(list(items))]
    failure: str | None = None
    result: Any = None
    try:
        result = work(shard(items))
    except StereoSRError as exc:
        failure = str(exc)
    merged = gather_to_rank0([(result, failure)])
    if merged is None:
        return None
    errors = [f for _, f in merged if f is not None]
    if errors:
        raise InputError(errors[0])
    return [r for r, _ in merged]
