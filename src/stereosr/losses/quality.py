"""No-reference loss on the KLT (PCA) coefficient statistics that KLTSR-QA uses.

This is not the KLTSR-QA metric: KLTSR-QA maps such statistics to a quality score with a
regressor learned from human opinion scores (not public); here the distance of the statistics
to those of pristine patches is the loss. It rates an image on its own, so minimised alone it
can be gamed (images with pristine-looking statistics but the wrong content score well):
train it beside a fidelity term (the training configs refuse it alone unless told otherwise).

Fitting (:func:`fit_klt`) on pristine HR images or patches:

1. Luma ``Y = 0.299 R + 0.587 G + 0.114 B`` (a grey channel is used as is), values in [0, 1].
2. ``patch_size`` x ``patch_size`` patches taken every ``stride`` pixels (default: not
   overlapping); with ``remove_dc`` each patch's own mean is subtracted first.
3. The KLT basis: eigenvectors of the patch covariance (minus the mean patch), sorted by
   decreasing eigenvalue, the first ``n_components`` kept (rows of ``basis``, orthonormal).
4. For every pristine sample (one image of the batch / list), statistics of each component's
   coefficients over the sample's patches, with v_k the variance of component k:

   - ``mean``: mean coefficient;
   - ``logvar``: log(v_k + 1e-8);
   - ``log_share``: log((v_k + 1e-8) / sum_j (v_j + 1e-8)), the shape of the KLT energy
     spectrum (independent of contrast; blur makes it steeper);
   - ``kurtosis``: log(4th central moment / (v_k + 1e-8)^2 + 1e-6).

   Their mean and variance across the pristine samples are the pristine statistics.

The score of an image (:func:`klt_quality_score`) is sum_s w_s * mean_k (s_k - pristine
mean)^2 / pristine variance: a weighted, diagonal Mahalanobis distance to the pristine
population, computed differentiably (strided patch view + matmul). The loss (:func:`klt_quality_loss`) is its
mean over the batch. Default weights: 1 for ``logvar``, ``log_share`` and ``kurtosis``, 0 for
``mean``: a coefficient's mean over an image follows its content (large-scale gradients), and
blurring moves it towards the pristine average, so it would reward blur (see docs/losses.md).
Fit on samples of the size the loss will see (e.g. the HR training patches): the spread of the
statistics depends on how many patches a sample has.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import CheckpointError, InputError
from ._common import as_float

__all__ = [
    "DEFAULT_KLT_WEIGHTS",
    "MOMENTS",
    "KLTQualityLoss",
    "KLTStats",
    "fit_klt",
    "klt_coefficients",
    "klt_quality_loss",
    "klt_quality_score",
    "klt_statistics",
    "load_klt",
    "to_luma",
]

MOMENTS = ("mean", "logvar", "log_share", "kurtosis")
DEFAULT_KLT_WEIGHTS: dict[str, float] = {"mean": 0.0, "logvar": 1.0, "log_share": 1.0,
                                         "kurtosis": 1.0}
_VAR_EPS = 1e-8
_KURT_EPS = 1e-6
_FORMAT = "stereosr-klt-v1"
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class KLTStats:
    """A KLT basis and the pristine coefficient statistics (tensors in float64 on the CPU).

    ``basis``: (K, P*P) orthonormal rows; ``patch_mean``: (P*P,); ``eigenvalues``: (K,);
    ``stat_mean``, ``stat_var``: (S, K) for the S statistics named in ``moments``.
    """

    patch_size: int
    stride: int
    remove_dc: bool
    moments: tuple[str, ...]
    basis: Tensor
    patch_mean: Tensor
    eigenvalues: Tensor
    stat_mean: Tensor
    stat_var: Tensor
    n_samples: int
    n_patches: int

    @property
    def n_components(self) -> int:
        return int(self.basis.shape[0])

    def save(self, path: str | os.PathLike[str], overwrite: bool = False) -> None:
        """Write as safetensors (atomic; an existing file is kept unless ``overwrite``)."""
        from safetensors.torch import save

        from ..io import atomic_write_bytes

        tensors = {"basis": self.basis, "patch_mean": self.patch_mean,
                   "eigenvalues": self.eigenvalues, "stat_mean": self.stat_mean,
                   "stat_var": self.stat_var}
        meta = {"format": _FORMAT, "patch_size": str(self.patch_size),
                "stride": str(self.stride), "remove_dc": str(int(self.remove_dc)),
                "moments": json.dumps(list(self.moments)), "n_samples": str(self.n_samples),
                "n_patches": str(self.n_patches)}
        data = save({k: v.detach().cpu().to(torch.float64).contiguous()
                     for k, v in tensors.items()}, metadata=meta)
        atomic_write_bytes(path, data, overwrite=overwrite)


def load_klt(path: str | os.PathLike[str]) -> KLTStats:
    """Read statistics written by :meth:`KLTStats.save`."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: KLT statistics file not found")
    try:
        with safe_open(str(p), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != _FORMAT:
        raise CheckpointError(f"{p}: not a stereosr KLT statistics file (format "
                              f"{meta.get('format')!r})")
    try:
        stats = KLTStats(
            patch_size=int(meta["patch_size"]), stride=int(meta["stride"]),
            remove_dc=bool(int(meta["remove_dc"])), moments=tuple(json.loads(meta["moments"])),
            basis=tensors["basis"], patch_mean=tensors["patch_mean"],
            eigenvalues=tensors["eigenvalues"], stat_mean=tensors["stat_mean"],
            stat_var=tensors["stat_var"], n_samples=int(meta["n_samples"]),
            n_patches=int(meta["n_patches"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{p}: incomplete KLT statistics ({exc})") from exc
    _validate(stats, str(p))
    return stats


def _validate(s: KLTStats, source: str) -> None:
    d = s.patch_size * s.patch_size
    k = s.basis.shape[0] if s.basis.ndim == 2 else -1
    ok = (s.basis.ndim == 2 and s.basis.shape[1] == d and tuple(s.patch_mean.shape) == (d,)
          and tuple(s.eigenvalues.shape) == (k,) and set(s.moments) <= set(MOMENTS)
          and len(s.moments) > 0
          and tuple(s.stat_mean.shape) == (len(s.moments), k) == tuple(s.stat_var.shape)
          and bool((s.stat_var > 0).all()))
    if not ok:
        raise CheckpointError(f"{source}: inconsistent KLT statistics (shapes or variances)")


def to_luma(images: Tensor) -> Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) BT.601 luma; (B, 1, H, W) is returned as is."""
    if images.ndim != 4 or images.shape[1] not in (1, 3) or not images.is_floating_point():
        raise InputError(f"expected a floating (B, 1 or 3, H, W) tensor, got {images.dtype} "
                         f"{tuple(images.shape)}")
    if images.shape[1] == 1:
        return images
    w = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * w).sum(dim=1, keepdim=True)


def _patches(luma: Tensor, patch_size: int, stride: int, remove_dc: bool) -> Tensor:
    """(B, 1, H, W) -> (B, L, P*P) patches (each minus its own mean when ``remove_dc``)."""
    h, w = luma.shape[-2:]
    if h < patch_size or w < patch_size:
        raise InputError(f"images of {h}x{w} are smaller than the {patch_size}x{patch_size} "
                         f"KLT patches")
    # (B, 1, nh, nw, P, P) strided view -> (B, nh * nw, P * P), row-major inside a patch.
    win = luma[:, 0].unfold(1, patch_size, stride).unfold(2, patch_size, stride)
    cols = win.reshape(luma.shape[0], -1, patch_size * patch_size)
    if remove_dc:
        cols = cols - cols.mean(dim=2, keepdim=True)
    return cols


def klt_coefficients(images: Tensor, stats: KLTStats) -> Tensor:
    """(B, C, H, W) in [0, 1] -> (B, L, K) KLT coefficients of its L patches."""
    x = to_luma(as_float(images))
    cols = _patches(x, stats.patch_size, stats.stride, stats.remove_dc)
    basis = stats.basis.to(cols.device, cols.dtype)
    mean = stats.patch_mean.to(cols.device, cols.dtype)
    return (cols - mean) @ basis.T


def _moments(coef: Tensor, moments: Sequence[str]) -> Tensor:
    """(B, L, K) coefficients -> (B, S, K) statistics over the L patches."""
    if coef.shape[1] < 2:
        raise InputError("each image must hold at least 2 KLT patches; use larger images")
    mean = coef.mean(dim=1)
    centred = coef - mean.unsqueeze(1)
    var = (centred * centred).mean(dim=1)
    out = []
    for name in moments:
        if name == "mean":
            out.append(mean)
        elif name == "logvar":
            out.append(torch.log(var + _VAR_EPS))
        elif name == "log_share":
            v = var + _VAR_EPS
            out.append(torch.log(v) - torch.log(v.sum(dim=1, keepdim=True)))
        elif name == "kurtosis":
            m4 = (centred ** 4).mean(dim=1)
            out.append(torch.log(m4 / (var + _VAR_EPS) ** 2 + _KURT_EPS))
        else:
            raise InputError(f"unknown KLT statistic {name!r}; choose from {', '.join(MOMENTS)}")
    return torch.stack(out, dim=1)


def klt_statistics(images: Tensor, stats: KLTStats) -> Tensor:
    """(B, C, H, W) in [0, 1] -> (B, S, K) coefficient statistics per image (differentiable)."""
    return _moments(klt_coefficients(images, stats), stats.moments)


def _weight_vector(stats: KLTStats, weights: Mapping[str, float] | None) -> list[float]:
    w = dict(DEFAULT_KLT_WEIGHTS if weights is None else weights)
    unknown = [k for k in w if k not in MOMENTS]
    if unknown:
        raise InputError(f"unknown KLT statistics {unknown}; choose from {', '.join(MOMENTS)}")
    missing = [k for k, v in w.items() if v and k not in stats.moments]
    if missing:
        raise InputError(f"the KLT statistics file has no {missing}; fit it again")
    out = [float(w.get(name, 0.0)) for name in stats.moments]
    if any(not (v >= 0 and v < float("inf")) for v in out) or not any(out):
        raise InputError(f"KLT statistic weights must be finite, >= 0 and not all 0, got {w}")
    return out


def klt_quality_score(images: Tensor, stats: KLTStats,
                      weights: Mapping[str, float] | None = None) -> Tensor:
    """(B,) weighted distance of each image's statistics to the pristine ones (lower = better).

    ``images``: (B, 1 or 3, H, W) in [0, 1]. ``weights``: per statistic name (default
    :data:`DEFAULT_KLT_WEIGHTS`; missing names weigh 0).
    """
    w = _weight_vector(stats, weights)
    s = klt_statistics(images, stats)
    mu = stats.stat_mean.to(s.device, s.dtype)
    var = stats.stat_var.to(s.device, s.dtype)
    per_stat = ((s - mu) ** 2 / var).mean(dim=2)  # (B, S)
    return (per_stat * torch.tensor(w, dtype=s.dtype, device=s.device)).sum(dim=1)


def klt_quality_loss(images: Tensor, stats: KLTStats,
                     weights: Mapping[str, float] | None = None) -> Tensor:
    """Scalar mean of :func:`klt_quality_score` over the batch."""
    return klt_quality_score(images, stats, weights).mean()


def _as_batches(images: Tensor | np.ndarray | Sequence[Tensor | np.ndarray]) -> list[Tensor]:
    """Inputs as (N, C, H, W) float64 tensors, one per image size; numpy arrays are (H, W[, C])
    images (uint8/uint16 scaled to [0, 1])."""
    items = [images] if isinstance(images, (Tensor, np.ndarray)) else list(images)
    if not items:
        raise InputError("fit_klt needs at least one image")
    out = []
    for item in items:
        if isinstance(item, np.ndarray):
            if item.dtype == np.uint8:
                a = item.astype(np.float64) / 255.0
            elif item.dtype == np.uint16:
                a = item.astype(np.float64) / 65535.0
            elif item.dtype.kind == "f":
                a = item.astype(np.float64)
            else:
                raise InputError(f"unsupported image dtype {item.dtype}; use uint8, uint16 or "
                                 f"float in [0, 1]")
            if a.ndim == 2:
                a = a[..., None]
            if a.ndim != 3:
                raise InputError(f"numpy images must be (H, W) or (H, W, C), got {a.shape}")
            if a.shape[2] == 4:
                a = a[..., :3]
            t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]
        elif isinstance(item, Tensor):
            t = item.detach().to("cpu", torch.float64)
            if t.ndim == 3:
                t = t[None]
        else:
            raise InputError(f"fit_klt takes tensors or numpy arrays, got {type(item).__name__}")
        if t.ndim != 4 or t.shape[1] not in (1, 3):
            raise InputError(f"images must have 1 or 3 channels, got shape {tuple(t.shape)}")
        out.append(t)
    groups: dict[tuple[int, ...], list[Tensor]] = {}
    for t in out:  # same-sized images are processed together
        groups.setdefault(tuple(t.shape[1:]), []).append(t)
    return [torch.cat(g) for g in groups.values()]


def fit_klt(images: Tensor | np.ndarray | Sequence[Tensor | np.ndarray], patch_size: int = 8,
            n_components: int | None = None, *, stride: int | None = None,
            remove_dc: bool = True, var_floor: float = 1e-6) -> KLTStats:
    """Fit the KLT basis and pristine statistics on HR images (see the module docstring).

    ``images``: (N, C, H, W) / (C, H, W) float tensors in [0, 1], or (H, W[, C]) numpy images
    (uint8/uint16 or float in [0, 1]), or a list of those; every image is one sample (at least
    2 samples). ``n_components``: default P*P - 1 with ``remove_dc`` (the DC direction has no
    variance left), else P*P. ``var_floor``: lower bound of the pristine statistic variances.
    """
    if patch_size < 2:
        raise InputError(f"patch_size must be >= 2, got {patch_size}")
    step = patch_size if stride is None else int(stride)
    if step < 1:
        raise InputError(f"stride must be >= 1, got {stride}")
    d = patch_size * patch_size
    k_max = d - 1 if remove_dc else d
    k = k_max if n_components is None else int(n_components)
    if not 1 <= k <= k_max:
        raise InputError(f"n_components must be in 1..{k_max} for {patch_size}x{patch_size} "
                         f"patches{' without DC' if remove_dc else ''}, got {n_components}")
    names = MOMENTS
    groups = [_patches(to_luma(t), patch_size, step, remove_dc) for t in _as_batches(images)]
    n_samples = sum(int(g.shape[0]) for g in groups)  # groups: (N_i, L_i, d) patches
    if n_samples < 2:
        raise InputError("fit_klt needs at least 2 pristine samples (images or patches)")
    total = sum(int(g.shape[0] * g.shape[1]) for g in groups)
    mean = sum((g.sum(dim=(0, 1)) for g in groups), torch.zeros(d, dtype=torch.float64)) / total
    scatter = torch.zeros(d, d, dtype=torch.float64)
    for g in groups:
        z = (g - mean).reshape(-1, d)
        scatter += z.T @ z
    cov = scatter / (total - 1)
    evals, evecs = torch.linalg.eigh(cov)
    order = torch.argsort(evals, descending=True)[:k]
    basis = evecs[:, order].T.contiguous()
    # Deterministic signs: the largest-magnitude entry of every basis vector is positive.
    pivot = basis.abs().argmax(dim=1)
    signs = torch.sign(basis[torch.arange(k), pivot])
    basis = basis * signs[:, None]
    s = torch.cat([_moments((g - mean) @ basis.T, names) for g in groups])  # (N, S, K)
    stat_var = s.var(dim=0, unbiased=True).clamp_min(var_floor)
    return KLTStats(patch_size, step, remove_dc, names, basis, mean, evals[order].clone(),
                    s.mean(dim=0), stat_var, n_samples, total)


class KLTQualityLoss(nn.Module):
    """Module form of :func:`klt_quality_loss`; ``forward(sr, target=None)`` ignores ``target``.

    ``stats``: a :class:`KLTStats` or the path of a file written by :meth:`KLTStats.save`.
    ``weights``: per statistic (default :data:`DEFAULT_KLT_WEIGHTS`). Has no trainable
    parameters; the statistics are non-persistent buffers (moved by ``.to(device)``).
    """

    def __init__(self, stats: KLTStats | str | os.PathLike[str],
                 weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        s = stats if isinstance(stats, KLTStats) else load_klt(stats)
        _validate(s, "KLT statistics")
        _weight_vector(s, weights)
        self.weights = dict(DEFAULT_KLT_WEIGHTS if weights is None else weights)
        self.patch_size, self.stride, self.remove_dc = s.patch_size, s.stride, s.remove_dc
        self.moments = s.moments
        self.n_samples, self.n_patches = s.n_samples, s.n_patches
        for name in ("basis", "patch_mean", "eigenvalues", "stat_mean", "stat_var"):
            self.register_buffer(name, getattr(s, name).to(torch.float32).clone(),
                                 persistent=False)

    def stats(self) -> KLTStats:
        """The statistics held, as a :class:`KLTStats` (buffers' device and dtype)."""
        buf = dict(self.named_buffers())
        return KLTStats(self.patch_size, self.stride, self.remove_dc, self.moments,
                        buf["basis"], buf["patch_mean"], buf["eigenvalues"], buf["stat_mean"],
                        buf["stat_var"], self.n_samples, self.n_patches)

    def forward(self, sr: Tensor, target: Tensor | None = None) -> Tensor:
        return klt_quality_loss(sr, self.stats(), self.weights)
