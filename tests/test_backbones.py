"""VGG/AlexNet feature stacks: torchvision layout, weight loading, features vs a plain computation."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from stereosr import backbones, hub
from stereosr.backbones import (
    FeatureStack,
    build_backbone,
    extract_features,
    imagenet_normalize,
    load_backbone,
)
from stereosr.errors import CheckpointError, InputError

# Layer indices of torchvision's `features` Sequentials (from its VGG configs D/E and AlexNet).
TORCHVISION_INDEX = {
    "vgg16": {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "relu5_3": 29,
              "pool5": 30, "conv1_1": 0},
    "vgg19": {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29,
              "relu5_4": 35, "pool5": 36, "conv5_4": 34},
    "alexnet": {"relu1": 1, "relu2": 4, "relu3": 7, "relu4": 9, "relu5": 11, "pool5": 12},
}
# Parameter counts of torchvision's feature stacks (a known property of these networks).
FEATURE_PARAMS = {"vgg16": 14_714_688, "vgg19": 20_024_384, "alexnet": 2_469_696}
N_LAYERS = {"vgg16": 31, "vgg19": 37, "alexnet": 13}


def _torchvision_state(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in torchvision's format, including classifier keys."""
    g = torch.Generator().manual_seed(seed)
    stack = FeatureStack(arch)
    state = {f"features.{k}": torch.randn(v.shape, generator=g) * 0.05
             for k, v in stack.features.state_dict().items()}
    state["classifier.0.weight"] = torch.randn(8, 4, generator=g)
    state["classifier.0.bias"] = torch.randn(8, generator=g)
    return state


@pytest.mark.parametrize("arch", backbones.BACKBONES)
def test_layout_matches_torchvision(arch: str) -> None:
    stack = build_backbone(arch)
    assert len(stack.features) == N_LAYERS[arch]
    assert sum(p.numel() for p in stack.parameters()) == FEATURE_PARAMS[arch]
    for name, idx in TORCHVISION_INDEX[arch].items():
        assert stack.layer_index[name] == idx
    assert all(not p.requires_grad for p in stack.parameters())
    stack.train()
    assert not stack.training, "a frozen stack stays in eval mode"


def _plain_vgg16_relu2_2(x: torch.Tensor, sd: dict[str, torch.Tensor]) -> torch.Tensor:
    def conv(h: torch.Tensor, i: int) -> torch.Tensor:
        return F.relu(F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1))

    h = conv(conv(x, 0), 2)
    h = F.max_pool2d(h, 2)
    return conv(conv(h, 5), 7)


def _plain_alexnet_relu2(x: torch.Tensor, sd: dict[str, torch.Tensor]) -> torch.Tensor:
    h = F.relu(F.conv2d(x, sd["features.0.weight"], sd["features.0.bias"], stride=4, padding=2))
    h = F.max_pool2d(h, 3, 2)
    return F.relu(F.conv2d(h, sd["features.3.weight"], sd["features.3.bias"], padding=2))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_file_and_features_match_plain_computation(tmp_path: Path, suffix: str) -> None:
    sd = _torchvision_state("vgg16")
    path = tmp_path / f"vgg16{suffix}"
    if suffix == ".pth":
        torch.save(sd, path)
    else:
        save_file(sd, str(path))
    stack = load_backbone("vgg16", weights=path)
    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    feats = stack(x, ["relu2_2", "relu1_2"])
    assert list(feats) == ["relu2_2", "relu1_2"]
    torch.testing.assert_close(feats["relu2_2"], _plain_vgg16_relu2_2(x, sd), rtol=1e-5,
                               atol=1e-6)
    assert feats["relu1_2"].shape == (2, 64, 20, 24)
    assert all(not p.requires_grad for p in stack.parameters()) and not stack.training


def test_alexnet_features_match_plain_computation(tmp_path: Path) -> None:
    sd = _torchvision_state("alexnet", seed=3)
    torch.save({"state_dict": sd}, tmp_path / "alex.pth")
    stack = load_backbone("alexnet", weights=tmp_path / "alex.pth")
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(stack(x, ["relu2"])["relu2"], _plain_alexnet_relu2(x, sd),
                               rtol=1e-5, atol=1e-6)


def test_gradients_flow_to_input_only() -> None:
    stack = build_backbone("vgg19")
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    out = extract_features(stack, x, ["relu3_1"])["relu3_1"]
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in stack.parameters())


def test_imagenet_normalize() -> None:
    x = torch.tensor(backbones.IMAGENET_MEAN).view(1, 3, 1, 1).expand(2, 3, 4, 5)
    assert imagenet_normalize(x).abs().max() < 1e-7
    y = imagenet_normalize(torch.ones(1, 3, 2, 2))
    expected = [(1 - m) / s for m, s in zip(backbones.IMAGENET_MEAN, backbones.IMAGENET_STD)]
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor(expected))
    with pytest.raises(InputError):
        imagenet_normalize(torch.ones(1, 1, 2, 2))


def test_bad_weights_and_inputs(tmp_path: Path) -> None:
    sd = _torchvision_state("vgg16")
    torch.save(sd, tmp_path / "vgg16.pth")
    with pytest.raises(CheckpointError, match="vgg19"):
        load_backbone("vgg19", weights=tmp_path / "vgg16.pth")
    bad = dict(sd)
    bad["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match="shape"):
        load_backbone("vgg16", weights=tmp_path / "shape.pth")
    torch.save({"features.0.weight": sd["features.0.weight"], "head.w": torch.zeros(1)},
               tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="head.w"):
        load_backbone("vgg16", weights=tmp_path / "odd.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_backbone("vgg16", weights=tmp_path / "junk.pth")
    with pytest.raises(InputError, match="not found"):
        load_backbone("vgg16", weights=tmp_path / "nope.pth")
    with pytest.raises(InputError, match="unknown backbone"):
        load_backbone("resnet50", weights=tmp_path / "vgg16.pth")
    with pytest.raises(InputError, match="has SHA-256 .* expected 00000000"):
        load_backbone("vgg16", weights=tmp_path / "vgg16.pth", sha256="00000000")
    stack = build_backbone("vgg16")
    with pytest.raises(InputError, match="no layer"):
        stack(torch.rand(1, 3, 32, 32), ["relu9_9"])
    with pytest.raises(InputError, match="too small"):
        stack(torch.rand(1, 3, 8, 8), ["relu5_3"])
    assert stack.channels("relu3_3") == 256 and stack.channels("pool5") == 512


class _CountingServer:
    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[misc]

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[_CountingServer, Path]]:
    root = tmp_path / "served"
    root.mkdir()
    srv = _CountingServer(root)
    try:
        yield srv, root
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


def test_load_from_url_with_torchvision_style_name(
        served: tuple[_CountingServer, Path], tmp_path: Path) -> None:
    srv, root = served
    sd = _torchvision_state("alexnet", seed=5)
    raw = root / "raw.pth"
    torch.save(sd, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    name = f"alexnet-owt-{digest[:8]}.pth"
    raw.rename(root / name)
    cache = tmp_path / "cache"
    a = load_backbone("alexnet", weights=f"{srv.base}/{name}", cache_dir=cache)
    b = load_backbone("alexnet", weights=f"{srv.base}/{name}", cache_dir=cache)
    assert len(srv.requests) == 1
    torch.testing.assert_close(a.features[0].weight, sd["features.0.weight"])
    torch.testing.assert_close(b.features[10].bias, sd["features.10.bias"])
    # A file whose bytes do not match the hash in its name is refused.
    (root / "alexnet-owt-00000000.pth").write_bytes((root / name).read_bytes())
    with pytest.raises(hub.DownloadError, match="checksum mismatch"):
        load_backbone("alexnet", weights=f"{srv.base}/alexnet-owt-00000000.pth", cache_dir=cache)


def test_default_weights_offline_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hub.OFFLINE_ENV, "1")
    with pytest.raises(InputError, match=r"no vgg16 ImageNet weights: put vgg16-397923af.pth .* at "
                                         r".*STEREOSR_CACHE.*pass weights=PATH") as info:
        load_backbone("vgg16", cache_dir=tmp_path)
    assert "\n" not in str(info.value)
    # A random-weight file placed in the cache under the official name is refused (one line).
    torch.save(_torchvision_state("vgg16"), tmp_path / "vgg16-397923af.pth")
    with pytest.raises(InputError, match=r"cached file .*vgg16-397923af.pth has SHA-256 "
                                         r"[0-9a-f]{16}\.\.\., expected 397923af") as info:
        load_backbone("vgg16", cache_dir=tmp_path)
    assert "\n" not in str(info.value)
    # ... and so is the same file given as a path under that name.
    with pytest.raises(InputError, match="has SHA-256 .* name carries '397923af'"):
        load_backbone("vgg16", weights=tmp_path / "vgg16-397923af.pth")
    # A cached file with the expected hash is used without any network access.
    digest = hashlib.sha256((tmp_path / "vgg16-397923af.pth").read_bytes()).hexdigest()
    (tmp_path / "vgg16-397923af.pth").rename(tmp_path / f"vgg16-{digest[:8]}.pth")
    monkeypatch.setitem(backbones.DEFAULT_WEIGHTS, "vgg16", backbones.WeightsSource(
        f"https://download.pytorch.org/models/vgg16-{digest[:8]}.pth", digest[:8]))
    stack = load_backbone("vgg16", cache_dir=tmp_path)
    assert stack.arch == "vgg16"


def test_default_weight_urls() -> None:
    for arch, src in backbones.DEFAULT_WEIGHTS.items():
        assert src.url.startswith("https://download.pytorch.org/models/")
        assert hub.hash_prefix_from_url(src.url) == src.sha256
        assert arch.replace("alexnet", "alexnet-owt") in src.url


class _Code:
    """Pickles as a call of os.system: what a booby-trapped weights file holds."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("exit 3",))


@pytest.mark.parametrize("kind", ["code", "non-finite", "list"])
def test_feature_and_heads_files_read_like_checkpoints(tmp_path: Path, kind: str) -> None:
    """VGG/AlexNet weights and LPIPS heads go through the checkpoint reader: pickled code is
    refused naming it (not with torch's advice to pass weights_only=False), NaN weights are
    refused naming the tensor, a non-dict is refused in one line."""
    from stereosr.metrics import load_lpips_heads

    sd = {f"features.{k}": v.clone() for k, v in
          backbones.FeatureStack("vgg16").features.state_dict().items()}
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1)
             for i, c in enumerate((64, 192, 384, 256, 256))}
    if kind == "code":
        sd["features.0.weight"], heads["lin0.model.1.weight"] = _Code(), _Code()  # type: ignore
    elif kind == "non-finite":
        sd["features.0.weight"][0, 0, 0, 0] = float("nan")
        heads["lin0.model.1.weight"][0, 0, 0, 0] = float("inf")
    expected = {"code": ["never executes pickled code"] * 2,
                "non-finite": ["features.0.weight", ("lin0.model.1.weight has negative or "
                               "non-finite")], "list": ["holds a list"] * 2}[kind]
    for (path, obj, load), text in zip(
            ((tmp_path / "vgg16.pth", sd, lambda p: load_backbone("vgg16", p)),
             (tmp_path / "alex.pth", heads, lambda p: load_lpips_heads("alex", p))), expected):
        torch.save([obj] if kind == "list" else obj, path)
        with pytest.raises(CheckpointError) as info:
            load(path)
        msg = str(info.value)
        assert "\n" not in msg and "weights_only" not in msg and text in msg, msg


def test_digits_in_a_name_that_are_no_hash(tmp_path: Path) -> None:
    """A name like vgg16-20240101.pth looks like a torchvision name: the mismatch message says
    how the digits were read and to rename the file; under another name it loads."""
    state = _torchvision_state("vgg16")
    dated = tmp_path / "vgg16-20240101.pth"
    torch.save(state, dated)
    with pytest.raises(InputError, match=r"name carries '20240101'.*a date\?\): then rename") \
            as info:
        load_backbone("vgg16", weights=dated)
    assert "\n" not in str(info.value)
    renamed = tmp_path / "vgg16_20240101.pth"
    dated.rename(renamed)
    stack = load_backbone("vgg16", weights=renamed)
    assert torch.equal(stack.features[0].weight, state["features.0.weight"])
