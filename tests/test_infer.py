"""Self-ensemble, tiling and the array/PIL upscale API."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from stereosr.imageops import from_float
from stereosr.infer import upscale, upscale_tensors
from stereosr.infer.tiling import default_overlap, row_bands, tiled_forward
from stereosr.models import NAFSSR, NAFSSRConfig, disable_tlc, enable_tlc


@pytest.fixture(scope="module")
def tiny() -> NAFSSR:
    torch.manual_seed(3)
    model = NAFSSR(NAFSSRConfig(width=8, num_blocks=2, scale=2))
    for name, p in model.named_parameters():
        torch.nn.init.normal_(p, std=0.05 if name.endswith(("beta", "gamma")) else 0.2)
    return model.eval()


def _pair(h: int = 10, w: int = 14, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g), torch.rand(1, 3, h, w, generator=g)


def test_ensemble_is_mean_of_four_explicit_passes(tiny):
    l, r = _pair()
    with torch.no_grad():
        outs = [tiny(l, r)]
        a, b = tiny(l.flip(-2), r.flip(-2))
        outs.append((a.flip(-2), b.flip(-2)))
        a, b = tiny(r.flip(-1), l.flip(-1))
        outs.append((b.flip(-1), a.flip(-1)))
        a, b = tiny(r.flip(-1).flip(-2), l.flip(-1).flip(-2))
        outs.append((b.flip(-1).flip(-2), a.flip(-1).flip(-2)))
    ref_l = sum(o[0] for o in outs) / 4
    ref_r = sum(o[1] for o in outs) / 4
    se_l, se_r = upscale_tensors(tiny, l, r, self_ensemble=True, auto_tile=False)
    assert torch.allclose(se_l, ref_l, atol=1e-6) and torch.allclose(se_r, ref_r, atol=1e-6)


def test_ensemble_symmetry_mirrored_swapped_pair(tiny):
    l, r = _pair(seed=5)
    se_l, se_r = upscale_tensors(tiny, l, r, self_ensemble=True, auto_tile=False)
    m_l, m_r = upscale_tensors(tiny, r.flip(-1), l.flip(-1), self_ensemble=True, auto_tile=False)
    assert torch.allclose(m_l, se_r.flip(-1), atol=1e-5)
    assert torch.allclose(m_r, se_l.flip(-1), atol=1e-5)
    v_l, _v_r = upscale_tensors(tiny, l.flip(-2), r.flip(-2), self_ensemble=True, auto_tile=False)
    assert torch.allclose(v_l, se_l.flip(-2), atol=1e-5)
    # Without the ensemble the model alone is not symmetric: the test can tell the difference.
    p_l, _ = upscale_tensors(tiny, l, r, auto_tile=False)
    _q_l, q_r = upscale_tensors(tiny, r.flip(-1), l.flip(-1), auto_tile=False)
    assert not torch.allclose(q_r.flip(-1), p_l, atol=1e-4)


def test_rgb_permutation_ensemble_is_equivariant(tiny):
    l, r = _pair(seed=7)
    a_l, a_r = upscale_tensors(tiny, l, r, rgb_permutations=True, auto_tile=False)
    for perm in itertools.permutations(range(3)):
        idx = list(perm)
        b_l, b_r = upscale_tensors(tiny, l[:, idx], r[:, idx], rgb_permutations=True,
                                   auto_tile=False)
        assert torch.allclose(b_l, a_l[:, idx], atol=1e-5)
        assert torch.allclose(b_r, a_r[:, idx], atol=1e-5)


def test_row_bands_partition_rows():
    for h, tile, ov in [(10, 3, 1), (17, 5, 4), (8, 8, 2), (9, 20, 3)]:
        bands = row_bands(h, tile, ov)
        cores = [r for _, _, c0, c1 in bands for r in range(c0, c1)]
        assert cores == list(range(h))
        for a0, a1, c0, c1 in bands:
            assert a0 == max(0, c0 - ov) and a1 == min(h, c1 + ov)


def test_tiling_with_full_context_is_exact(tiny):
    l, r = _pair(h=12, w=9)
    ref = tiny(l, r)
    with torch.no_grad():
        out = tiled_forward(tiny, l, r, 2, tile=4, overlap=12)  # every band sees all rows
    assert torch.allclose(out[0], ref[0], atol=1e-6) and torch.allclose(out[1], ref[1], atol=1e-6)


def test_tiling_blends_towards_the_full_result(tiny):
    l, r = _pair(h=40, w=12, seed=2)
    with torch.no_grad():
        ref = tiny(l, r)
        err = [(tiled_forward(tiny, l, r, 2, tile=10, overlap=ov)[0] - ref[0]).abs().max().item()
               for ov in (0, 4, 12)]
    assert err[2] < err[0]


def test_default_overlap_holds_the_tlc_window(tiny, monkeypatch):
    import copy
    import sys
    from types import SimpleNamespace

    up = sys.modules["stereosr.infer.upscale"]
    model = copy.deepcopy(tiny)
    assert default_overlap(enable_tlc(model, (30, 90))) == 45  # window 45x135
    assert default_overlap(enable_tlc(model, (64, 90))) == 96
    assert default_overlap(enable_tlc(model, (8, 24))) == 24  # never below 24 rows
    assert default_overlap(disable_tlc(model)) == 24
    onnx_like = SimpleNamespace(config=SimpleNamespace(tlc_train_size=(40, 120)))
    assert default_overlap(onnx_like) == 60
    # upscale_tensors tiles with it unless told otherwise.
    seen = []
    monkeypatch.setattr(up, "tiled_forward",
                        lambda fn, l_, r_, s, tile, overlap: seen.append(overlap) or fn(l_, r_))
    l, r = _pair(h=20, w=9)
    enable_tlc(model, (30, 90))
    upscale_tensors(model, l, r, tile=5)
    upscale_tensors(model, l, r, tile=5, overlap=3)
    assert seen == [45, 3]


def _api_pair(dtype: type, channels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (9, 13) if channels == 0 else (9, 13, channels)
    if dtype == np.float32:
        return rng.random(shape, dtype=np.float32), rng.random(shape, dtype=np.float32)
    hi = np.iinfo(dtype).max
    return (rng.integers(0, hi, shape, endpoint=True).astype(dtype),
            rng.integers(0, hi, shape, endpoint=True).astype(dtype))


def _reference_rgb(tiny: NAFSSR, l: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Second code path: explicit normalisation and a direct model call."""
    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.transpose(2, 0, 1).copy())[None].float()
    with torch.no_grad():
        a, b = tiny(t(l), t(r))
    return (a[0].clamp(0, 1).permute(1, 2, 0).numpy(), b[0].clamp(0, 1).permute(1, 2, 0).numpy())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_rgb_dtypes_round_trip(tiny, dtype):
    l, r = _api_pair(dtype, 3)
    sl, sr = upscale(l, r, tiny)
    assert sl.dtype == dtype and sl.shape == (18, 26, 3)
    scale = {np.uint8: 255.0, np.uint16: 65535.0, np.float32: 1.0}[dtype]
    ref_l, ref_r = _reference_rgb(tiny, l / scale, r / scale)
    assert np.array_equal(sl, from_float(ref_l, dtype) if dtype != np.float32 else sl)
    assert np.abs(sr.astype(np.float64) / scale - ref_r).max() <= 0.5 / scale + 1e-6


def test_grey_in_grey_out(tiny):
    l, r = _api_pair(np.uint8, 0)
    sl, _sr = upscale(l, r, tiny)
    assert sl.shape == (18, 26) and sl.dtype == np.uint8
    ref_l, _ = _reference_rgb(tiny, np.repeat(l[..., None], 3, 2) / 255.0,
                              np.repeat(r[..., None], 3, 2) / 255.0)
    assert np.array_equal(sl, from_float(ref_l.mean(axis=2), np.uint8))
    g1, _ = upscale(l[..., None], r[..., None], tiny)
    assert g1.shape == (18, 26, 1) and np.array_equal(g1[..., 0], sl)


def test_rgba_alpha_is_bicubic_and_reattached(tiny):
    l, r = _api_pair(np.uint8, 4)
    sl, _ = upscale(l, r, tiny)
    assert sl.shape == (18, 26, 4)
    rgb_only, _ = upscale(l[..., :3], r[..., :3], tiny)
    assert np.array_equal(sl[..., :3], rgb_only)
    alpha = torch.from_numpy(l[..., 3] / 255.0).float()[None, None]
    ref = torch.nn.functional.interpolate(alpha, scale_factor=2, mode="bicubic")
    assert np.array_equal(sl[..., 3], from_float(ref[0, 0].clamp(0, 1).numpy(), np.uint8))


def test_pil_in_pil_out(tiny):
    l, r = _api_pair(np.uint8, 3)
    pl, _pr = upscale(Image.fromarray(l), Image.fromarray(r), tiny)
    assert isinstance(pl, Image.Image) and pl.size == (26, 18) and pl.mode == "RGB"
    al, _ = upscale(l, r, tiny)
    assert np.array_equal(np.asarray(pl), al)


def test_bad_arrays(tiny):
    l, r = _api_pair(np.uint8, 3)
    with pytest.raises(ValueError, match="differ"):
        upscale(l, r[:-1], tiny)
    f = l.astype(np.float32)
    f[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        upscale(f, f, tiny)
    with pytest.raises(ValueError, match="zero size"):
        upscale(l[:0], r[:0], tiny)


def test_output_that_is_not_finite_is_never_returned(tiny: NAFSSR) -> None:
    """Finite weights too large for float32 make NaN outputs (written out: black images):
    refused in one line, through the tensor and the array API; NaN inputs are named as such."""
    import copy

    from stereosr.errors import CheckpointError, InputError

    big = copy.deepcopy(tiny)
    with torch.no_grad():
        big.intro.weight[0, 0, 0, 0] = 3e38
    assert all(bool(torch.isfinite(p).all()) for p in big.parameters())
    left, right = _pair()
    with pytest.raises(CheckpointError, match="output holds .* NaN or infinite values"):
        upscale_tensors(big, left, right)
    arr_l = from_float(left[0].permute(1, 2, 0).numpy(), np.uint8)
    with pytest.raises(CheckpointError, match="weights overflow"):
        upscale(arr_l, arr_l.copy(), big)
    bad = left.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="input views hold NaN"):
        upscale_tensors(tiny, bad, right)
