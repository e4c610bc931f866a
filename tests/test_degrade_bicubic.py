"""MATLAB bicubic imresize against GNU Octave references (tests/data/make_octave_refs.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import stereosr
from stereosr.degrade import imresize, imresize_torch
from stereosr.degrade.bicubic import cubic_kernel, output_size, resize_matrix, resize_weights
from stereosr.errors import InputError

REFS = np.load(Path(__file__).parent / "data" / "octave_imresize.npz")
CASES = {str(n): (float(s[0]), float(s[1])) for n, s in zip(REFS["names"], REFS["scales"])}
METHOD = {str(n): str(m) for n, m in zip(REFS["names"], REFS["methods"])}


def _to_torch(a: np.ndarray) -> torch.Tensor:
    a3 = a[..., None] if a.ndim == 2 else a
    return torch.from_numpy(np.ascontiguousarray(a3.transpose(2, 0, 1)))[None]


def _from_torch(t: torch.Tensor, ndim: int) -> np.ndarray:
    a = t[0].detach().numpy().transpose(1, 2, 0)
    return a[..., 0] if ndim == 2 else a


def test_reference_file_covers_the_required_cases() -> None:
    names = set(CASES)
    for tag in ("half", "third", "quarter", "x2", "x4"):
        assert {f"rgb_{tag}", f"grey_{tag}"} <= names
        assert METHOD[f"rgb_{tag}"] == METHOD[f"grey_{tag}"] == "bicubic"
    shapes = [REFS[f"{n}_in"].shape for n in names]
    assert any(s[0] % 2 and s[1] % 2 for s in shapes)          # odd sizes
    assert any(len(s) == 2 for s in shapes) and any(len(s) == 3 for s in shapes)


@pytest.mark.parametrize("name", sorted(CASES))
def test_float_matches_octave(name: str) -> None:
    img = REFS[f"{name}_in"].astype(np.float64) / 255.0
    out = imresize(img, scale=CASES[name], method=METHOD[name])
    ref = REFS[f"{name}_double"]
    assert out.dtype == np.float64 and out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-6


@pytest.mark.parametrize("name", sorted(CASES))
def test_uint8_matches_matlab_semantics(name: str) -> None:
    out = imresize(REFS[f"{name}_in"], scale=CASES[name], method=METHOD[name])
    ref = REFS[f"{name}_uint8"]
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("name", sorted(CASES))
def test_octave_native_uint8_is_the_float_path_rounded_once(name: str) -> None:
    # Octave's own uint8 imresize rounds once at the end; MATLAB (and we) after each pass.
    img = REFS[f"{name}_in"]
    once = imresize(img.astype(np.float64), scale=CASES[name], method=METHOD[name])
    once = np.clip(np.floor(once + 0.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(once, REFS[f"{name}_octave_uint8"])


def test_scalar_scale_equals_pair() -> None:
    img = REFS["rgb_third_in"]
    np.testing.assert_array_equal(imresize(img, 1 / 3), imresize(img, scale=(1 / 3, 1 / 3)))
    np.testing.assert_array_equal(imresize(img, np.float32(0.5)), imresize(img, [0.5, 0.5]))
    np.testing.assert_array_equal(imresize(img, np.array([0.5, 0.25])), imresize(img, (0.5, 0.25)))


def test_float32_in_float32_out() -> None:
    img = REFS["rgb_quarter_in"].astype(np.float32) / 255
    out = imresize(img, 0.25)
    assert out.dtype == np.float32
    assert np.abs(out - REFS["rgb_quarter_double"]).max() < 1e-6


def test_uint16_rounds_and_saturates_after_each_pass() -> None:
    img = REFS["noise_x2_in"].astype(np.uint16) * 257
    out = imresize(img, 2)
    assert out.dtype == np.uint16

    def to_u16(a: np.ndarray) -> np.ndarray:  # round half away from zero (a >= 0 after clip)
        return np.floor(np.clip(a, 0, 65535) + 0.5)

    mh, mw = resize_matrix(7, 14, 2.0), resize_matrix(10, 20, 2.0)
    ref = to_u16(to_u16(mh @ img.astype(np.float64)) @ mw.T)
    np.testing.assert_array_equal(out, ref)
    assert out.max() == 65535  # overshoot saturates instead of wrapping


def test_output_size_rule() -> None:
    assert output_size((10, 9), 0.25)[0] == (3, 3)          # ceil(2.5), ceil(2.25)
    assert output_size((9, 12), 1 / 3)[0] == (3, 4)
    assert output_size((7, 5), 4)[0] == (28, 20)
    assert output_size((30, 45), output_shape=(None, 20)) == ((14, 20), (20 / 45, 20 / 45))
    assert output_size((30, 45), output_shape=(10, 9)) == ((10, 9), (1 / 3, 0.2))


def test_output_shape_equals_scale_when_consistent() -> None:
    img = REFS["rgb_half_in"][:40, :58]
    np.testing.assert_array_equal(imresize(img, 0.5), imresize(img, output_shape=(20, 29)))


def test_kernel_values_and_partition_of_unity() -> None:
    np.testing.assert_allclose(cubic_kernel(np.array([0, 0.5, 1, 1.5, 2, 2.5])),
                               [1, 0.5625, 0, -0.0625, 0, 0])
    for n_in, s in ((17, 0.25), (17, 1 / 3), (9, 2.0), (20, 0.3)):
        w, idx = resize_weights(n_in, int(np.ceil(n_in * s)), s)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
        assert idx.min() >= 0 and idx.max() < n_in


def test_constant_image_stays_constant() -> None:
    img = np.full((13, 17, 3), 0.37)
    for method in ("bicubic", "bilinear", "area", "nearest"):
        for s in (0.25, 1 / 3, 0.3, 2, 4):
            np.testing.assert_allclose(imresize(img, s, method=method), 0.37, atol=1e-12)


def test_area_is_the_block_mean_for_integer_factors() -> None:
    img = REFS["rgb_half_in"][:40, :56].astype(np.float64)
    for f in (2, 4):
        blocks = img.reshape(40 // f, f, 56 // f, f, 3).mean(axis=(1, 3))
        np.testing.assert_allclose(imresize(img, 1 / f, method="area"), blocks, atol=1e-12)


def test_nearest_mirrors_points_past_the_edge() -> None:
    # 41 rows at x1/4: the 11th output samples (1-based) row 42.5 -> 43, mirrored to row 40
    col = np.arange(41, dtype=np.float64)[:, None]
    out = imresize(col, 0.25, method="nearest")[:, 0]
    np.testing.assert_array_equal(out, [2, 6, 10, 14, 18, 22, 26, 30, 34, 38, 39])


def test_bad_inputs() -> None:
    with pytest.raises(InputError):
        imresize(np.zeros((4, 4, 3, 2)), 0.5)
    with pytest.raises(InputError):
        imresize(np.zeros((4, 4), dtype=np.int32), 0.5)
    with pytest.raises(InputError):
        imresize(np.zeros((4, 4)), 0)
    with pytest.raises(InputError):
        imresize(np.zeros((4, 4)))
    with pytest.raises(InputError):
        imresize(np.zeros((4, 4)), 0.5, output_shape=(2, 2))
    for bad_scale in ("half", (0.5, 0.5, 0.5), (0.5, -1), float("inf")):
        with pytest.raises(InputError, match="scale"):
            imresize(np.zeros((4, 4)), bad_scale)  # type: ignore[arg-type]
    for bad_shape in ((0, 5), (None, None), (4,), ("a", 3)):
        with pytest.raises(InputError, match="output_shape"):
            imresize(np.zeros((4, 4)), output_shape=bad_shape)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown resize method"):
        imresize(np.zeros((4, 4)), 0.5, method="lanczos")
    with pytest.raises(InputError):
        imresize_torch(torch.zeros(1, 4, 4), 0.5)
    with pytest.raises(InputError):
        imresize_torch(torch.zeros(1, 1, 4, 4, dtype=torch.long), 0.5)


def test_package_level_export() -> None:
    assert stereosr.imresize is imresize


@pytest.mark.parametrize("name", ["rgb_half", "grey_third", "rgb_quarter", "rgb_x2", "grey_x4",
                                  "rgb_rows_half_cols_quarter", "noise_rows_quarter_cols_x2",
                                  "rgb_quarter_bilinear", "rgb_quarter_nearest"])
def test_torch_equals_numpy(name: str) -> None:
    img = REFS[f"{name}_in"].astype(np.float64) / 255
    ref = imresize(img, scale=CASES[name], method=METHOD[name])
    np.testing.assert_allclose(ref, REFS[f"{name}_double"], atol=1e-6)
    out64 = imresize_torch(_to_torch(img), scale=CASES[name], method=METHOD[name])
    assert np.abs(_from_torch(out64, img.ndim) - ref).max() < 1e-12
    out32 = imresize_torch(_to_torch(img).float(), scale=CASES[name], method=METHOD[name])
    assert out32.dtype == torch.float32
    assert np.abs(_from_torch(out32, img.ndim) - ref).max() < 1e-5


def test_torch_batch_and_output_shape() -> None:
    x = torch.rand(3, 2, 21, 30, dtype=torch.float64)
    out = imresize_torch(x, output_shape=(7, 10))
    assert out.shape == (3, 2, 7, 10)
    for b in range(3):
        ref = imresize(x[b].numpy().transpose(1, 2, 0), output_shape=(7, 10))
        np.testing.assert_allclose(out[b].numpy().transpose(1, 2, 0), ref, atol=1e-12)


def test_torch_gradient_is_the_transposed_resize() -> None:
    x = torch.rand(1, 1, 11, 14, dtype=torch.float64, requires_grad=True)
    y = imresize_torch(x, 0.5)
    g = torch.rand_like(y)
    (y * g).sum().backward()
    mh, mw = resize_matrix(11, 6, 0.5), resize_matrix(14, 7, 0.5)
    expected = mh.T @ g[0, 0].numpy() @ mw
    assert x.grad is not None
    np.testing.assert_allclose(x.grad[0, 0].numpy(), expected, atol=1e-12)


def test_torch_gradcheck() -> None:
    x = torch.rand(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: imresize_torch(t, 1 / 3), (x,))
    assert torch.autograd.gradcheck(lambda t: imresize_torch(t, 2), (x,))
