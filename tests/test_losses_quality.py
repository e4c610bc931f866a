"""KLT quality loss: basis against numpy's eigh, statistics against loops, gradcheck, blur."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage import data

from stereosr.errors import CheckpointError, InputError
from stereosr.losses import (
    KLTQualityLoss,
    fit_klt,
    klt_quality_loss,
    klt_quality_score,
    klt_statistics,
    load_klt,
)
from stereosr.losses.quality import LUMA, MOMENTS


def _crops(img: np.ndarray, n: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    return [img[y:y + size, x:x + size] for y, x in
            zip(rng.integers(0, h - size, n), rng.integers(0, w - size, n))]


def _np_luma(img: np.ndarray) -> np.ndarray:
    a = img.astype(np.float64) / 255.0
    return a if a.ndim == 2 else a[..., :3] @ np.array(LUMA)


def _np_patches(luma: np.ndarray, p: int, stride: int, remove_dc: bool) -> np.ndarray:
    rows = []
    for y in range(0, luma.shape[0] - p + 1, stride):
        for x in range(0, luma.shape[1] - p + 1, stride):
            v = luma[y:y + p, x:x + p].reshape(-1)
            rows.append(v - v.mean() if remove_dc else v)
    return np.array(rows)


def _np_stats(patches: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> dict[str, np.ndarray]:
    c = (patches - mean) @ basis.T
    m = c.mean(axis=0)
    v = ((c - m) ** 2).mean(axis=0)
    m4 = ((c - m) ** 4).mean(axis=0)
    return {"mean": m, "logvar": np.log(v + 1e-8),
            "log_share": np.log(v + 1e-8) - np.log(np.sum(v + 1e-8)),
            "kurtosis": np.log(m4 / (v + 1e-8) ** 2 + 1e-6)}


@pytest.fixture(scope="module")
def pristine() -> list[np.ndarray]:
    """Crops of scikit-image photographs (colour and grey) as pristine samples."""
    out: list[np.ndarray] = []
    for seed, name in enumerate(["astronaut", "coffee", "chelsea", "camera"]):
        out += _crops(getattr(data, name)(), 6, 40, seed)
    return out


@pytest.mark.parametrize("remove_dc,stride", [(True, 6), (False, 6), (True, 3)])
def test_basis_matches_numpy_eigendecomposition(pristine: list[np.ndarray], remove_dc: bool,
                                                stride: int) -> None:
    p = 6
    stats = fit_klt(pristine, patch_size=p, stride=stride, remove_dc=remove_dc)
    k = p * p - (1 if remove_dc else 0)
    basis = stats.basis.numpy()
    assert basis.shape == (k, p * p)
    np.testing.assert_allclose(basis @ basis.T, np.eye(k), atol=1e-10)

    x = np.concatenate([_np_patches(_np_luma(c), p, stride, remove_dc) for c in pristine])
    assert stats.n_patches == len(x) and stats.n_samples == len(pristine)
    np.testing.assert_allclose(stats.patch_mean.numpy(), x.mean(axis=0), atol=1e-12)
    evals, evecs = np.linalg.eigh(np.cov(x, rowvar=False))
    order = np.argsort(evals)[::-1][:k]
    evals, evecs = evals[order], evecs[:, order]
    np.testing.assert_allclose(stats.eigenvalues.numpy(), evals, rtol=1e-8, atol=1e-14)
    # Eigenvectors are defined up to sign, and only where eigenvalues are well separated.
    gaps = np.minimum(np.abs(np.diff(evals, prepend=np.inf)),
                      np.abs(np.diff(evals, append=-np.inf)))
    separated = gaps > 1e-2 * evals
    assert separated[:3].all() and separated.sum() >= k // 2
    dots = np.abs(np.sum(basis[separated] * evecs.T[separated], axis=1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-6)


def test_statistics_match_plain_loops(pristine: list[np.ndarray]) -> None:
    stats = fit_klt(pristine, patch_size=4, n_components=9)
    mean, basis = stats.patch_mean.numpy(), stats.basis.numpy()
    per_sample = [_np_stats(_np_patches(_np_luma(c), 4, 4, True), mean, basis) for c in pristine]
    for s, name in enumerate(stats.moments):
        vals = np.stack([d[name] for d in per_sample])
        np.testing.assert_allclose(stats.stat_mean[s].numpy(), vals.mean(axis=0), rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(stats.stat_var[s].numpy(),
                                   np.maximum(vals.var(axis=0, ddof=1), 1e-6), rtol=1e-9)
    img = pristine[0]  # colour, (H, W, 3) uint8
    t = torch.tensor(img.astype(np.float64) / 255.0).permute(2, 0, 1)[None]
    got = klt_statistics(t, stats)[0].numpy()
    want = np.stack([per_sample[0][name] for name in stats.moments])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # The score by hand, default weights (mean statistic weighted 0).
    z = (want - stats.stat_mean.numpy()) ** 2 / stats.stat_var.numpy()
    w = np.array([0.0, 1.0, 1.0, 1.0])
    assert klt_quality_score(t, stats).item() == pytest.approx(float(w @ z.mean(axis=1)),
                                                                rel=1e-10)
    only_mean = klt_quality_score(t, stats, {"mean": 2.0}).item()
    assert only_mean == pytest.approx(2.0 * float(z[0].mean()), rel=1e-10)


def test_gradcheck_float64() -> None:
    g = torch.Generator().manual_seed(0)
    train = torch.rand(6, 3, 12, 12, generator=g, dtype=torch.float64)
    stats = fit_klt(train, patch_size=4, n_components=5)
    x = torch.rand(2, 3, 8, 12, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: klt_quality_loss(t, stats), (x,))
    weights = {"mean": 1.0, "logvar": 0.5, "log_share": 0.0, "kurtosis": 2.0}
    assert torch.autograd.gradcheck(lambda t: klt_quality_loss(t, stats, weights), (x,))
    grey = torch.rand(1, 1, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: klt_quality_score(t, stats), (grey,))


def test_blurred_image_scores_worse() -> None:
    names = ["astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "grass", "gravel"]
    samples = [c for seed, name in enumerate(names)
               for c in _crops(getattr(data, name)(), 12, 64, 10 + seed)]
    stats = fit_klt(samples, patch_size=8)  # samples of the size scored below
    left = data.stereo_motorcycle()[0]  # held-out test image (never fitted on)
    crops = _crops(left, 12, 64, 99)
    sharp = torch.tensor(np.stack(crops) / 255.0).permute(0, 3, 1, 2)
    blurred = torch.tensor(np.stack([gaussian_filter(c.astype(np.float64) / 255.0, (1.0, 1.0, 0))
                                     for c in crops])).permute(0, 3, 1, 2)
    s_sharp = klt_quality_score(sharp, stats)
    s_blur = klt_quality_score(blurred, stats)
    assert (s_blur > s_sharp).all()
    assert s_blur.mean() > 2 * s_sharp.mean()
    loss = KLTQualityLoss(stats)
    assert loss(blurred.float()).item() == pytest.approx(s_blur.mean().item(), rel=1e-4)
    # A gradient step on the loss makes a blurred image score better.
    x = blurred[:2].clone().requires_grad_(True)
    before = klt_quality_loss(x, stats)
    before.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    after = klt_quality_loss(x.detach() - 1e-4 * x.grad / x.grad.abs().max(), stats)
    assert after < before


def test_save_load_roundtrip(tmp_path: Path, pristine: list[np.ndarray]) -> None:
    stats = fit_klt(pristine[:6], patch_size=4, n_components=7, stride=2)
    path = tmp_path / "klt.safetensors"
    stats.save(path)
    with pytest.raises(InputError, match="already exists"):
        stats.save(path)
    stats.save(path, overwrite=True)
    back = load_klt(path)
    assert (back.patch_size, back.stride, back.remove_dc, back.moments) == (4, 2, True, MOMENTS)
    assert (back.n_samples, back.n_patches) == (stats.n_samples, stats.n_patches)
    for name in ("basis", "patch_mean", "eigenvalues", "stat_mean", "stat_var"):
        torch.testing.assert_close(getattr(back, name), getattr(stats, name), rtol=0, atol=0)
    x = torch.rand(2, 3, 16, 16)
    module = KLTQualityLoss(path, weights={"logvar": 1.0})
    assert module.state_dict() == {}, "statistics are not checkpoint state"
    assert module(x).item() == pytest.approx(
        klt_quality_loss(x.double(), stats, {"logvar": 1.0}).item(), rel=1e-4)
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError):
        load_klt(tmp_path / "bad.safetensors")
    from safetensors.torch import save_file

    save_file({"basis": torch.zeros(2, 4)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a stereosr KLT"):
        load_klt(tmp_path / "other.safetensors")
    with pytest.raises(InputError, match="not found"):
        load_klt(tmp_path / "missing.safetensors")


def test_bad_input(pristine: list[np.ndarray]) -> None:
    with pytest.raises(InputError, match="n_components"):
        fit_klt(pristine, patch_size=4, n_components=16)  # DC removed: at most 15
    with pytest.raises(InputError, match="at least 2"):
        fit_klt(pristine[:1], patch_size=4)
    with pytest.raises(InputError, match="smaller"):
        fit_klt(torch.rand(2, 3, 3, 3), patch_size=4)
    stats = fit_klt(pristine[:4], patch_size=4)
    with pytest.raises(InputError, match="1 or 3"):
        klt_quality_loss(torch.rand(1, 2, 8, 8), stats)
    with pytest.raises(InputError, match="unknown KLT"):
        klt_quality_loss(torch.rand(1, 3, 8, 8), stats, {"skew": 1.0})
    with pytest.raises(InputError, match="not all 0"):
        KLTQualityLoss(stats, weights={"mean": 0.0})
