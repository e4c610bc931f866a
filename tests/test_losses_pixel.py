"""Pixel losses against plain numpy formulas, gradients and bad input."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from stereosr.errors import InputError
from stereosr.losses import CharbonnierLoss, L1Loss, MSELoss, charbonnier_loss, l1_loss, mse_loss

RNG = np.random.default_rng(0)


def _np_reference(kind: str, a: np.ndarray, b: np.ndarray, eps: float = 1e-3) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    if kind == "l1":
        return float(np.mean(np.abs(d)))
    if kind == "mse":
        return float(np.mean(d ** 2))
    return float(np.mean(np.sqrt(d ** 2 + eps ** 2)))


CASES: list[tuple[str, Callable[..., torch.Tensor], torch.nn.Module]] = [
    ("l1", l1_loss, L1Loss()),
    ("mse", mse_loss, MSELoss()),
    ("charbonnier", charbonnier_loss, CharbonnierLoss()),
]


@pytest.mark.parametrize("kind,fn,module", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_match_numpy(kind: str, fn: Callable[..., torch.Tensor], module: torch.nn.Module,
                            dtype: torch.dtype) -> None:
    a = RNG.random((2, 3, 9, 7))
    b = RNG.random((2, 3, 9, 7))
    ta, tb = torch.tensor(a, dtype=dtype), torch.tensor(b, dtype=dtype)
    want = _np_reference(kind, a, b)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert fn(ta, tb).item() == pytest.approx(want, rel=tol)
    assert module(ta, tb).item() == pytest.approx(want, rel=tol)
    assert fn(ta, tb).ndim == 0


@pytest.mark.parametrize("kind,fn,module", CASES, ids=[c[0] for c in CASES])
def test_gradients(kind: str, fn: Callable[..., torch.Tensor], module: torch.nn.Module) -> None:
    a = torch.rand(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.rand(1, 2, 4, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: fn(x, b), (a,))
    loss = module(a, b)
    loss.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_charbonnier_eps() -> None:
    x = torch.rand(1, 3, 5, 5)
    assert charbonnier_loss(x, x, eps=0.01).item() == pytest.approx(0.01)
    y = x + 0.5
    assert charbonnier_loss(x, y, eps=1e-6).item() == pytest.approx(l1_loss(x, y).item(),
                                                                    rel=1e-5)
    assert CharbonnierLoss(0.2)(x, x).item() == pytest.approx(0.2)
    with pytest.raises(InputError, match="eps"):
        charbonnier_loss(x, x, eps=0.0)
    with pytest.raises(InputError, match="eps"):
        CharbonnierLoss(-1.0)


def test_bad_input() -> None:
    with pytest.raises(InputError, match="same shape"):
        l1_loss(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        mse_loss(torch.rand(3, 4, 4), torch.rand(3, 4, 4))
    with pytest.raises(InputError, match="floating"):
        l1_loss(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 3, 4, 4))
