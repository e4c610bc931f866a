"""Perceptual (VGG-16) and texture (VGG-19 Gram) losses against plain computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stereosr.backbones import IMAGENET_MEAN, IMAGENET_STD, FeatureStack, build_backbone
from stereosr.errors import InputError
from stereosr.losses import PerceptualLoss, TextureLoss, gram_matrix, perceptual_loss, texture_loss


def _seeded_state(arch: str, seed: int) -> dict[str, torch.Tensor]:
    """torchvision-format weights with He-scaled random convolutions (non-trivial features)."""
    g = torch.Generator().manual_seed(seed)
    stack = FeatureStack(arch)
    state = {}
    for k, v in stack.features.state_dict().items():
        if k.endswith("weight"):
            fan_in = v[0].numel()
            state[f"features.{k}"] = torch.randn(v.shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            state[f"features.{k}"] = torch.randn(v.shape, generator=g) * 0.01
    state["classifier.6.bias"] = torch.zeros(10)
    return state


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    sd = _seeded_state("vgg16", 0)
    path = tmp_path_factory.mktemp("w") / "vgg16.pth"
    torch.save(sd, path)
    return path, sd


@pytest.fixture(scope="module")
def vgg19_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    sd = _seeded_state("vgg19", 1)
    path = tmp_path_factory.mktemp("w") / "vgg19.pth"
    torch.save(sd, path)
    return path, sd


def _plain_vgg(x: torch.Tensor, sd: dict[str, torch.Tensor], convs_per_block: list[int],
               upto_block: int) -> dict[int, torch.Tensor]:
    """relu{b}_{last} features of blocks 1..upto_block, computed with F.conv2d directly."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)
    h = (x - mean) / std
    out, idx = {}, 0
    for b in range(1, upto_block + 1):
        if b > 1:
            h = F.max_pool2d(h, 2)
            idx += 1
        for _ in range(convs_per_block[b - 1]):
            h = F.relu(F.conv2d(h, sd[f"features.{idx}.weight"].to(x.dtype),
                                sd[f"features.{idx}.bias"].to(x.dtype), padding=1))
            idx += 2
        out[b] = h
    return out


def _images(seed: int, shape: tuple[int, ...] = (2, 3, 32, 32)) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g), torch.rand(shape, generator=g)


@pytest.mark.parametrize("distance", ["l1", "mse"])
def test_perceptual_matches_plain_computation(vgg16_file: tuple[Path, dict], distance: str
                                              ) -> None:
    path, sd = vgg16_file
    loss_fn = PerceptualLoss({"relu1_2": 0.5, "relu3_3": 2.0}, distance, weights=path)
    sr, hr = _images(0)
    got = loss_fn(sr, hr).item()
    f_sr = _plain_vgg(sr.double(), sd, [2, 2, 3], 3)
    f_hr = _plain_vgg(hr.double(), sd, [2, 2, 3], 3)

    def dist(a: torch.Tensor, b: torch.Tensor) -> float:
        d = (a - b).numpy()
        return float(np.mean(np.abs(d)) if distance == "l1" else np.mean(d ** 2))

    want = 0.5 * dist(f_sr[1], f_hr[1]) + 2.0 * dist(f_sr[3], f_hr[3])
    assert got == pytest.approx(want, rel=1e-4)
    assert perceptual_loss(sr, sr, loss_fn.backbone).item() == 0.0


def test_perceptual_gradients_and_frozen_backbone(vgg16_file: tuple[Path, dict]) -> None:
    loss_fn = PerceptualLoss(weights=vgg16_file[0])
    assert [p for p in loss_fn.parameters() if p.requires_grad] == []
    sr, hr = _images(1, (1, 3, 16, 16))
    sr.requires_grad_(True)
    loss_fn.train()
    loss = loss_fn(sr, hr)
    loss.backward()
    assert not loss_fn.backbone.training
    assert sr.grad is not None and torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss_fn.parameters())


def test_perceptual_bad_config() -> None:
    stack = build_backbone("vgg16")
    sr, hr = _images(2, (1, 3, 16, 16))
    with pytest.raises(InputError, match="no layer"):
        perceptual_loss(sr, hr, stack, {"relu3_4": 1.0})  # VGG-19 only
    with pytest.raises(InputError, match=">= 0"):
        perceptual_loss(sr, hr, stack, {"relu1_2": -1.0})
    with pytest.raises(InputError, match="at least one"):
        perceptual_loss(sr, hr, stack, {})
    with pytest.raises(InputError, match="one of"):
        perceptual_loss(sr, hr, stack, distance="l2")
    with pytest.raises(InputError, match="RGB"):
        perceptual_loss(sr[:, :1], hr[:, :1], stack)


def test_gram_matrix_matches_numpy() -> None:
    f = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    a = f.numpy().reshape(2, 5, 12)
    want = np.stack([a[i] @ a[i].T for i in range(2)]) / (5 * 12)
    np.testing.assert_allclose(gram_matrix(f).numpy(), want, rtol=1e-12)
    half = gram_matrix(f.to(torch.bfloat16))
    assert half.dtype == torch.float32
    assert torch.autograd.gradcheck(gram_matrix, (f[:1, :2].clone().requires_grad_(),))


@pytest.mark.parametrize("distance", ["mse", "l1"])
def test_texture_matches_plain_computation(vgg19_file: tuple[Path, dict], distance: str) -> None:
    path, sd = vgg19_file
    loss_fn = TextureLoss({"relu1_2": 1.0, "relu2_2": 3.0}, distance, weights=path)
    sr, hr = _images(3, (2, 3, 16, 20))
    got = loss_fn(sr, hr).item()
    f_sr = _plain_vgg(sr.double(), sd, [2, 2], 2)
    f_hr = _plain_vgg(hr.double(), sd, [2, 2], 2)

    def gram_np(t: torch.Tensor) -> np.ndarray:
        a = t.numpy()
        b, c, h, w = a.shape
        m = a.reshape(b, c, h * w)
        return np.einsum("bcn,bdn->bcd", m, m) / (c * h * w)

    def dist(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(np.abs(a - b)) if distance == "l1" else np.mean((a - b) ** 2))

    want = (dist(gram_np(f_sr[1]), gram_np(f_hr[1]))
            + 3.0 * dist(gram_np(f_sr[2]), gram_np(f_hr[2])))
    assert got == pytest.approx(want, rel=1e-4)


def test_texture_ignores_layout_but_sees_texture(vgg19_file: tuple[Path, dict]) -> None:
    """Gram statistics: swapping the image halves barely changes them; blurring does."""
    loss_fn = TextureLoss({"relu2_1": 1.0}, weights=vgg19_file[0])
    g = torch.Generator().manual_seed(5)
    hr = torch.rand(1, 3, 32, 64, generator=g)
    swapped = torch.cat([hr[..., 32:], hr[..., :32]], dim=-1)
    blurred = F.avg_pool2d(F.pad(hr, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    assert loss_fn(swapped, hr).item() < 0.05 * loss_fn(blurred, hr).item()
    sr = hr.clone().requires_grad_(True)
    loss_fn(sr * 0.9, hr).backward()
    assert sr.grad is not None and torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0
    assert [p for p in loss_fn.parameters() if p.requires_grad] == []
    assert texture_loss(hr, hr, loss_fn.backbone).item() == 0.0
