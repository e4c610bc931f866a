"""LPIPS: weights through the download + checksum path, value against a plain computation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from weights_utils import random_backbone_state

from stereosr.backbones import FeatureStack
from stereosr.errors import CheckpointError, InputError
from stereosr.metrics import LPIPS, load_lpips, load_lpips_heads, lpips_distance, lpips_heads_path

CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def _random_heads(net: str, seed: int, path: Path) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
             for i, c in enumerate(CHANNELS[net])}
    torch.save(heads, path)
    return heads


def _plain_lpips(x: torch.Tensor, y: torch.Tensor, sd: dict[str, torch.Tensor],
                 heads: dict[str, torch.Tensor], net: str) -> float:
    """Second code path: explicit convolutions in float64, loops over channels for the heads."""
    sd = {k: v.double() for k, v in sd.items()}

    def conv(h: torch.Tensor, i: int, stride: int = 1, pad: int = 1) -> torch.Tensor:
        return F.relu(F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"],
                               stride=stride, padding=pad))

    def taps(img: torch.Tensor) -> list[torch.Tensor]:
        shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
        scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)
        h = ((img.double() * 2 - 1) - shift) / scale
        out = []
        if net == "alex":
            h = conv(h, 0, stride=4, pad=2)
            out.append(h)
            h = conv(F.max_pool2d(h, 3, 2), 3, pad=2)
            out.append(h)
            h = conv(F.max_pool2d(h, 3, 2), 6)
            out.append(h)
            h = conv(h, 8)
            out.append(h)
            out.append(conv(h, 10))
            return out
        idx = 0
        for block, n in enumerate((2, 2, 3, 3, 3)):
            if block:
                h = F.max_pool2d(h, 2, 2)
                idx += 1
            for _ in range(n):
                h = conv(h, idx)
                idx += 2
            out.append(h)
        return out

    total = 0.0
    for i, (a, b) in enumerate(zip(taps(x), taps(y))):
        w = heads[f"lin{i}.model.1.weight"].double().flatten()
        na = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        nb = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        layer = torch.zeros(a.shape[-2:], dtype=torch.float64)
        for c in range(a.shape[1]):
            layer += w[c] * (na[0, c] - nb[0, c]) ** 2
        total += float(layer.mean())
    return total


def _images(seed: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    sr = np.clip(hr + rng.normal(0, 25, hr.shape), 0, 255).astype(np.uint8)
    return sr, hr


def test_alex_lpips_via_download(server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = server
    state = random_backbone_state("alexnet", seed=1)
    weights = root / "alexnet-random.pth"
    torch.save(state, weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    heads = _random_heads("alex", 2, tmp_path / "alex_heads.pth")
    cache = tmp_path / "cache"
    model = load_lpips("alex", backbone_weights=f"{base}/alexnet-random.pth", sha256=digest,
                       heads=tmp_path / "alex_heads.pth", cache_dir=cache, progress=False)
    assert (cache / "alexnet-random.pth").is_file()
    sr, hr = _images(3, (67, 75))
    value = lpips_distance(model, sr, hr)
    x = torch.from_numpy(sr).permute(2, 0, 1)[None] / 255.0
    y = torch.from_numpy(hr).permute(2, 0, 1)[None] / 255.0
    assert value == pytest.approx(_plain_lpips(x, y, state, heads, "alex"), rel=1e-4)
    assert value > 0
    assert lpips_distance(model, hr, hr) == 0.0
    # a wrong checksum is refused and leaves nothing in the cache
    with pytest.raises(InputError, match="checksum"):
        load_lpips("alex", backbone_weights=f"{base}/alexnet-random.pth", sha256="0" * 64,
                   heads=tmp_path / "alex_heads.pth", cache_dir=tmp_path / "cache2",
                   progress=False)
    assert not (tmp_path / "cache2" / "alexnet-random.pth").exists()


def test_vgg_lpips_from_file_and_gradients(tmp_path: Path) -> None:
    state = random_backbone_state("vgg16", seed=4)
    path = tmp_path / "vgg16-random.pth"
    torch.save(state, path)
    heads = _random_heads("vgg", 5, tmp_path / "vgg_heads.pth")
    model = load_lpips("vgg", backbone_weights=path, heads=tmp_path / "vgg_heads.pth",
                       progress=False)
    sr, hr = _images(6, (35, 33))
    x = torch.from_numpy(sr).permute(2, 0, 1)[None] / 255.0
    y = torch.from_numpy(hr).permute(2, 0, 1)[None] / 255.0
    assert lpips_distance(model, sr, hr) == pytest.approx(
        _plain_lpips(x, y, state, heads, "vgg"), rel=1e-4)
    # batched, differentiable w.r.t. the input, frozen weights
    xb = torch.cat([x, y]).requires_grad_(True)
    d = model(xb, torch.cat([y, y]))
    assert d.shape == (2,) and float(d.detach()[1]) == 0.0
    d.sum().backward()
    assert xb.grad is not None and float(xb.grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in model.parameters())


def test_heads_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    heads = _random_heads("alex", 7, tmp_path / "h.pth")
    save_file(heads, str(tmp_path / "h.safetensors"))
    loaded = load_lpips_heads("alex", tmp_path / "h.safetensors")
    assert all(torch.equal(a, heads[f"lin{i}.model.1.weight"]) for i, a in enumerate(loaded))
    with pytest.raises(CheckpointError, match="shape"):
        load_lpips_heads("vgg", tmp_path / "h.pth")
    bad = dict(heads)
    bad["lin2.model.1.weight"] = -bad["lin2.model.1.weight"]
    torch.save(bad, tmp_path / "neg.pth")
    with pytest.raises(CheckpointError, match="negative"):
        load_lpips_heads("alex", tmp_path / "neg.pth")
    with pytest.raises(InputError, match="not found"):
        load_lpips_heads("alex", tmp_path / "missing.pth")
    with pytest.raises(InputError, match="unknown LPIPS"):
        load_lpips_heads("squeeze")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_lpips_heads("alex", tmp_path / "junk.pth")


@pytest.mark.skipif(lpips_heads_path("alex") is None, reason="lpips package not installed")
def test_heads_of_the_lpips_package() -> None:
    for net in ("alex", "vgg"):
        heads = load_lpips_heads(net)
        assert [int(h.shape[1]) for h in heads] == list(CHANNELS[net])
        assert all(float(h.min()) >= 0 for h in heads)


def test_lpips_module_checks() -> None:
    heads = [torch.rand(1, c, 1, 1) for c in CHANNELS["alex"]]
    with pytest.raises(InputError, match="backbone"):
        LPIPS("alex", FeatureStack("vgg16"), heads)
    model = LPIPS("alex", FeatureStack("alexnet"), heads)
    with pytest.raises(InputError):
        model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 63))


@pytest.mark.parametrize("net,arch,smallest", [("alex", "alexnet", 31), ("vgg", "vgg16", 16)])
def test_images_too_small_for_lpips_one_line(net: str, arch: str, smallest: int) -> None:
    """The smallest side LPIPS can score is that of torch's own layers (AlexNet: the second
    3x3 pool needs a 3 x 3 map, so 31 px; VGG-16: four 2x2 pools before relu5_3, so 16 px);
    below it one line says so, in LPIPS terms, not the backbone's."""
    model = LPIPS(net, FeatureStack(arch), [torch.rand(1, c, 1, 1) for c in CHANNELS[net]])
    relu5 = {"alex": 12, "vgg": 30}[net]  # torch's layers up to the last LPIPS tap
    torch_layers = torch.nn.Sequential(*list(FeatureStack(arch).features)[:relu5])
    with pytest.raises(RuntimeError):
        torch_layers(torch.rand(1, 3, smallest - 1, 40))
    torch_layers(torch.rand(1, 3, smallest, smallest))
    assert float(model(torch.rand(1, 3, smallest, smallest), torch.rand(1, 3, smallest,
                                                                        smallest))[0]) > 0
    with pytest.raises(InputError) as info:
        model(torch.rand(1, 3, smallest - 1, 40), torch.rand(1, 3, smallest - 1, 40))
    msg = str(info.value)
    assert f"at least {smallest} x {smallest}" in msg and "\n" not in msg
    assert "shallower" not in msg
