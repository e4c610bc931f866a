"""Deterministic, resumable, shardable sampling of training samples.

A training run is a sequence of GLOBAL sample indices ``g = 0, 1, 2, ...``; iteration ``t``
uses ``g`` in ``[t * B, (t + 1) * B)`` with ``B`` the total batch size. Every sample is a pure
function of ``(seed, g)``: which pair it comes from (:class:`EpochPermutation`) and the random
numbers of its crop and augmentation (:func:`sample_rng`). So resuming needs only the
iteration counter, and a distributed run whose ranks take disjoint slices of each global batch
sees exactly the data of a single-process run with the whole batch, in any number of worker
processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["EpochPermutation", "StepBatchSampler", "sample_rng"]

_PAIR_STREAM = 0x5A1E  # separates the pair-order stream from the per-sample streams


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of global sample ``index`` (crop position, flips, permutation)."""
    return np.random.default_rng([seed, index])


class EpochPermutation:
    """Visit every pair once per epoch, in an order reshuffled each epoch from ``seed``.

    ``pair_of(g)`` is the pair index of global sample ``g``; epoch ``e`` covers
    ``g`` in ``[e * n, (e + 1) * n)``.
    """

    def __init__(self, num_items: int, seed: int) -> None:
        if num_items < 1:
            raise ValueError("EpochPermutation needs at least one item")
        self.num_items = num_items
        self.seed = seed
        self._epoch = -1
        self._order = np.arange(num_items)

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of ``range(num_items)`` used in ``epoch``."""
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, _PAIR_STREAM, epoch])
            self._order = rng.permutation(self.num_items)
            self._epoch = epoch
        return self._order

    def pair_of(self, index: int) -> int:
        epoch, pos = divmod(index, self.num_items)
        return int(self.order(epoch)[pos])


class StepBatchSampler:
    """Yields, for iterations ``start_iter .. total_iters - 1``, this rank's micro-batches of
    global sample indices (a batch sampler for ``torch.utils.data.DataLoader``).

    Global batch ``B = per_rank * world_size * accumulate``. Micro-step ``a`` of iteration
    ``t`` on rank ``r`` gets ``g = t*B + a*(per_rank*world_size) + r*per_rank + [0, per_rank)``:
    the ranks' slices of one micro-step are disjoint and together contiguous.
    """

    def __init__(self, per_rank: int, *, world_size: int = 1, rank: int = 0,
                 accumulate: int = 1, start_iter: int = 0, total_iters: int) -> None:
        if per_rank < 1 or world_size < 1 or accumulate < 1:
            raise ValueError("per_rank, world_size and accumulate must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.per_rank = per_rank
        self.world_size = world_size
        self.rank = rank
        self.accumulate = accumulate
        self.start_iter = start_iter
        self.total_iters = total_iters

    @property
    def global_batch(self) -> int:
        return self.per_rank * self.world_size * self.accumulate

    def indices(self, iteration: int, micro: int = 0) -> list[int]:
        """This rank's global sample indices for one micro-step."""
        base = (iteration * self.global_batch + micro * self.per_rank * self.world_size
                + self.rank * self.per_rank)
        return list(range(base, base + self.per_rank))

    def __iter__(self) -> Iterator[list[int]]:
        for t in range(self.start_iter, self.total_iters):
            for a in range(self.accumulate):
                yield self.indices(t, a)

    def __len__(self) -> int:
        return max(0, self.total_iters - self.start_iter) * self.accumulate
