"""Training data: stereo pairs cached in memory and cut into random augmented patches.

:class:`PairCache` holds every training pair (LR and HR views, both in memory, LR made once
with MATLAB-exact bicubic). :class:`StereoPatchDataset` maps a global sample index to a
random paired crop + augmentation (pure function of ``(seed, index)``, see
:mod:`stereosr.data.sampler`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from ..data.augment import StereoSample, augment_stereo, shifted_crop, textured_window, view_gain
from ..data.sampler import EpochPermutation, sample_rng
from ..errors import InputError

__all__ = [
    "CachedPair",
    "PairCache",
    "PairDatasetLike",
    "StereoPatchDataset",
    "collate_patches",
    "open_pair_dataset",
]


class PairDatasetLike(Protocol):
    """Any map-style dataset of stereo pairs: ``ds[i]`` is a dict with float32 (H, W, 3) arrays
    ``lr_left``, ``lr_right``, ``hr_left``, ``hr_right`` in [0, 1] and a ``name``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


@dataclass(frozen=True)
class CachedPair:
    """One pair in memory: (H, W, 3) arrays of dtype uint8/uint16 (divide by ``denom``) or
    float32 (``denom`` 1)."""

    name: str
    lr_left: np.ndarray
    lr_right: np.ndarray
    hr_left: np.ndarray
    hr_right: np.ndarray
    denom: float

    def sample(self) -> StereoSample:
        return StereoSample(self.lr_left, self.lr_right, self.hr_left, self.hr_right)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.sample())


def open_pair_dataset(root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                      scale: int, layout: str = "auto") -> PairDatasetLike:
    """The stereo pairs of a folder, or of several folders one after the other, as a
    :class:`PairDatasetLike` (:class:`stereosr.data.datasets.StereoSRDataset` per folder: LR
    files where the layout has them, else MATLAB bicubic of the modcropped HR views).

    With several folders (the official recipe trains on Flickr1024 and Middlebury together)
    each folder's layout is detected on its own (or ``layout`` for all of them), and a pair's
    name is prefixed with its folder (``data/extra/0001``), so names stay unique.

    Raises:
        InputError: no folder given, the same folder twice, or a folder that holds no pairs.
    """
    from torch.utils.data import ConcatDataset

    from ..data.datasets import StereoSRDataset

    roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    if not roots or not all(str(r) for r in roots):
        raise InputError("no training data: set data.train_root to a folder of stereo pairs "
                         "(or a list of folders)")
    if len({os.path.realpath(r) for r in roots}) != len(roots):
        raise InputError(f"data folders {[str(r) for r in roots]} name one folder twice; "
                         "list each folder once")
    if len(roots) == 1:
        return StereoSRDataset(roots[0], scale, layout=layout)
    return ConcatDataset([_PrefixedNames(StereoSRDataset(r, scale, layout=layout), str(r))
                          for r in roots])


class _PrefixedNames(torch.utils.data.Dataset):
    """A pair dataset whose pair names carry a folder prefix (``prefix/name``)."""

    def __init__(self, dataset: PairDatasetLike, prefix: str) -> None:
        self.dataset, self.prefix = dataset, prefix.rstrip("/\\")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        item["name"] = f"{self.prefix}/{item['name']}"
        return item


class PairCache:
    """All pairs of a dataset in memory (uint8 keeps 4x less memory than float32)."""

    def __init__(self, pairs: Sequence[CachedPair]) -> None:
        if not pairs:
            raise InputError("the training dataset is empty")
        self.pairs = list(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> CachedPair:
        return self.pairs[index]

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.pairs)

    @classmethod
    def from_dataset(cls, dataset: PairDatasetLike, *, max_pairs: int | None = None,
                     dtype: str = "uint8", threads: int = 1,
                     progress: Callable[[int, int], None] | None = None) -> PairCache:
        """Cache a map-style dataset of float32 dict samples (see :class:`PairDatasetLike`).

        ``dtype="uint8"`` stores ``round(255 x)``: exact for 8-bit images (and LR made from
        them by MATLAB-style integer bicubic), 4x smaller than float32; use ``"float32"`` for
        16-bit or degraded (non-integer) data.
        """
        n = len(dataset) if max_pairs is None else min(len(dataset), max_pairs)

        def load(i: int) -> CachedPair:
            item = dataset[i]
            views = [np.asarray(item[k], dtype=np.float32)
                     for k in ("lr_left", "lr_right", "hr_left", "hr_right")]
            denom = 1.0
            if dtype == "uint8":
                views = [np.clip(np.round(v * 255.0), 0, 255).astype(np.uint8) for v in views]
                denom = 255.0
            lr_l, lr_r, hr_l, hr_r = views
            return CachedPair(str(item.get("name", i)), lr_l, lr_r, hr_l, hr_r, denom)

        out: list[CachedPair] = []
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            for i, pair in enumerate(pool.map(load, range(n))):
                out.append(pair)
                if progress is not None:
                    progress(i + 1, n)
        return cls(out)

    def check_patch(self, patch_hw: tuple[int, int], scale: int) -> None:
        """Raise InputError when an LR view is smaller than the patch or not 1/scale of HR."""
        ph, pw = patch_hw
        for p in self.pairs:
            h, w = p.lr_left.shape[:2]
            if ph > h or pw > w:
                raise InputError(f"data.lr_patch {ph}x{pw} is larger than the LR image {h}x{w} "
                                 f"of pair {p.name!r}; use a smaller patch or larger images")
            hh, hw = p.hr_left.shape[:2]
            if (hh, hw) != (h * scale, w * scale):
                raise InputError(f"pair {p.name!r}: HR {hh}x{hw} is not {scale} x LR {h}x{w}; "
                                 "check model.scale")


class StereoPatchDataset(torch.utils.data.Dataset):
    """Global sample index -> dict of (3, ph, pw) LR and (3, s*ph, s*pw) HR float32 tensors in
    [0, 1] (keys ``lr_left``, ``lr_right``, ``hr_left``, ``hr_right``).

    Sample ``g`` comes from pair :meth:`EpochPermutation.pair_of` ``(g)`` with crop and
    augmentation drawn from :func:`sample_rng` ``(seed, g)``: identical in any worker. With
    ``patch_tries > 1`` the crop is the most textured of that many draws
    (:func:`stereosr.data.augment.textured_crop`); with ``view_gain > 0`` the right view gets
    its own exposure and colour balance (:func:`stereosr.data.augment.view_gain`); with
    ``view_shift > 0`` the right view is moved up or down by a whole number of HR rows drawn
    uniformly from ``[-view_shift, view_shift]`` (with ``view_shift_prob`` set: shifted with
    that probability only, by a non-zero number of rows drawn uniformly from ``1..view_shift``,
    up or down) and its LR view made again
    (:func:`stereosr.data.augment.shifted_crop`: the LR views must be the MATLAB bicubic
    downscale of the HR views, which is checked on the first pair). Draw order: window, shift,
    flips and permutation, gains; the windows are those of ``view_shift`` 0.
    """

    def __init__(self, cache: PairCache, patch_hw: tuple[int, int], scale: int, *, seed: int,
                 hflip: bool = True, vflip: bool = True, rgb_perm: bool = True,
                 patch_tries: int = 1, view_gain: float = 0.0, view_shift: int = 0,
                 view_shift_prob: float | None = None) -> None:
        if int(view_shift) != view_shift or view_shift < 0:
            raise InputError(f"view_shift must be a whole number of HR rows >= 0, got "
                             f"{view_shift!r}")
        if view_shift_prob is not None and not (0.0 < view_shift_prob <= 1.0 and view_shift):
            raise InputError(f"view_shift_prob must be in (0, 1] and needs view_shift > 0, got "
                             f"{view_shift_prob!r} with view_shift {view_shift}")
        cache.check_patch(patch_hw, scale)
        if view_shift:
            _check_bicubic_lr(cache[0], scale)
        self.patch_tries = patch_tries
        self.view_gain = view_gain
        self.view_shift = int(view_shift)
        self.view_shift_prob = view_shift_prob
        self.cache = cache
        self.patch_hw = patch_hw
        self.scale = scale
        self.seed = seed
        self.flags = {"hflip": hflip, "vflip": vflip, "rgb_perm": rgb_perm}
        self.order = EpochPermutation(len(cache), seed)

    def __len__(self) -> int:
        # Indices are unbounded (epochs repeat); report one epoch.
        return len(self.cache)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        pair = self.cache[self.order.pair_of(index)]
        rng = sample_rng(self.seed, index)
        sample = pair.sample()
        top, left = textured_window(sample, self.patch_hw, self.scale, rng, self.patch_tries)
        shift = self._draw_shift(rng)
        crop = shifted_crop(sample, top, left, self.patch_hw, self.scale, shift)
        crop = augment_stereo(crop, rng, **self.flags)
        inv = np.float32(1.0 / pair.denom)
        views = StereoSample(*(a.astype(np.float32) * inv if pair.denom != 1.0
                               else a.astype(np.float32) for a in crop))
        views = view_gain(views, rng, self.view_gain)
        return {key: torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
                for key, arr in zip(("lr_left", "lr_right", "hr_left", "hr_right"), views)}

    def _draw_shift(self, rng: np.random.Generator) -> int:
        """HR rows to move this sample's right view by (0: left as it is)."""
        top = self.view_shift
        if not top:
            return 0
        if self.view_shift_prob is None:
            return int(rng.integers(-top, top + 1))
        if rng.random() >= self.view_shift_prob:
            return 0
        rows = int(rng.integers(1, top + 1))
        return rows if rng.random() < 0.5 else -rows


def _check_bicubic_lr(pair: CachedPair, scale: int) -> None:
    """Raise InputError unless the pair's LR views are the MATLAB bicubic downscale of its HR
    views (to the rounding of the cache), as remaking a shifted LR view assumes."""
    from ..data.datasets import bicubic_lr

    tol = 1.0 if pair.denom != 1.0 else 1e-4
    for which, lr, hr in (("left", pair.lr_left, pair.hr_left),
                          ("right", pair.lr_right, pair.hr_right)):
        made = bicubic_lr(hr, scale).astype(np.float32)
        if made.shape != lr.shape or np.abs(made - lr.astype(np.float32)).max() > tol:
            raise InputError(f"pair {pair.name!r}: its {which} LR view is not the bicubic "
                             "downscale of its HR view, so data.view_shift cannot remake it; "
                             "set data.view_shift: 0 or train on HR pairs with bicubic LR")


def collate_patches(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack per-sample (3, h, w) tensors into (B, 3, h, w) batches."""
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
