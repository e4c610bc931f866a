"""Frozen ImageNet feature stacks (VGG-16, VGG-19, AlexNet) for perceptual losses and LPIPS.

The layer numbering of :class:`FeatureStack.features` is the one of torchvision's ``features``
Sequential, so torchvision weight files (state dicts with ``features.N.weight`` /
``features.N.bias``; ``classifier.*`` keys are ignored) load as they are, without torchvision.

Named layers (the output of that layer):

- VGG: ``conv{b}_{i}``, ``relu{b}_{i}`` (block b, conv i) and ``pool{b}``, e.g. ``relu1_2``,
  ``relu2_2``, ``relu3_3``, ``relu4_3``, ``relu5_3`` for VGG-16, ``relu5_4`` for VGG-19.
- AlexNet: ``conv1``..``conv5``, ``relu1``..``relu5``, ``pool1``, ``pool2``, ``pool5``.

Inputs are (B, 3, H, W) float tensors; ImageNet-trained weights expect RGB in [0, 1] passed
through :func:`imagenet_normalize` first (the feature stacks do not normalise by themselves).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import CheckpointError, InputError
from .hub import (
    DownloadError,
    check_sha256,
    download,
    download_or_explain,
    hash_prefix_from_name,
    hash_prefix_from_url,
    sha256_file,
)

__all__ = [
    "BACKBONES",
    "DEFAULT_WEIGHTS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FeatureStack",
    "WeightsSource",
    "build_backbone",
    "extract_features",
    "imagenet_normalize",
    "layer_names",
    "load_backbone",
    "load_backbone_state_dict",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Conv widths per block; "M" = 2x2 max pool with stride 2 (VGG configurations D and E).
_VGG_CFG: dict[str, list[list[int]]] = {
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}
# AlexNet ("one weird trick" variant used by torchvision): (out, kernel, stride, padding, pool?)
_ALEX_CFG: list[tuple[int, int, int, int, bool]] = [
    (64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False), (256, 3, 1, 1, False),
    (256, 3, 1, 1, True)]

BACKBONES = ("vgg16", "vgg19", "alexnet")


@dataclass(frozen=True)
class WeightsSource:
    """Official download of ImageNet weights: URL and SHA-256 prefix (from the file name)."""

    url: str
    sha256: str


#: torchvision's ImageNet (IMAGENET1K_V1) weight files.
DEFAULT_WEIGHTS: dict[str, WeightsSource] = {
    "vgg16": WeightsSource("https://download.pytorch.org/models/vgg16-397923af.pth", "397923af"),
    "vgg19": WeightsSource("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", "dcbb9e9d"),
    "alexnet": WeightsSource("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                             "7be5be79"),
}


def _vgg_layers(cfg: list[list[int]]) -> tuple[list[nn.Module], dict[str, int]]:
    layers: list[nn.Module] = []
    names: dict[str, int] = {}
    c_in = 3
    for b, widths in enumerate(cfg, start=1):
        for i, c_out in enumerate(widths, start=1):
            names[f"conv{b}_{i}"] = len(layers)
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
            names[f"relu{b}_{i}"] = len(layers)
            layers.append(nn.ReLU())
            c_in = c_out
        names[f"pool{b}"] = len(layers)
        layers.append(nn.MaxPool2d(2, 2))
    return layers, names


def _alexnet_layers() -> tuple[list[nn.Module], dict[str, int]]:
    layers: list[nn.Module] = []
    names: dict[str, int] = {}
    c_in = 3
    for k, (c_out, ks, stride, pad, pool) in enumerate(_ALEX_CFG, start=1):
        names[f"conv{k}"] = len(layers)
        layers.append(nn.Conv2d(c_in, c_out, ks, stride=stride, padding=pad))
        names[f"relu{k}"] = len(layers)
        layers.append(nn.ReLU())
        if pool:
            names[f"pool{k}"] = len(layers)
            layers.append(nn.MaxPool2d(3, 2))
        c_in = c_out
    return layers, names


def _check_arch(name: str) -> str:
    key = name.lower()
    if key not in BACKBONES:
        raise InputError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return key


def layer_names(arch: str) -> dict[str, int]:
    """Named layers of ``arch`` -> index in its ``features`` Sequential."""
    key = _check_arch(arch)
    return dict((_alexnet_layers() if key == "alexnet" else _vgg_layers(_VGG_CFG[key]))[1])


class FeatureStack(nn.Module):
    """Convolutional part of VGG-16/VGG-19/AlexNet, indexed like torchvision's ``features``.

    Frozen stacks (see :meth:`freeze`) stay in eval mode and have no trainable parameters;
    gradients still flow through them to the input.
    """

    def __init__(self, arch: str) -> None:
        super().__init__()
        self.arch = _check_arch(arch)
        if self.arch == "alexnet":
            layers, names = _alexnet_layers()
        else:
            layers, names = _vgg_layers(_VGG_CFG[self.arch])
        self.features = nn.Sequential(*layers)
        self.layer_index: dict[str, int] = names
        self._frozen = False

    def freeze(self) -> FeatureStack:
        """No gradients for the weights, eval mode for good (``train()`` is then a no-op)."""
        for p in self.parameters():
            p.requires_grad_(False)
        self._frozen = True
        return super().train(False)

    def train(self, mode: bool = True) -> FeatureStack:
        return super().train(False if self._frozen else mode)

    def channels(self, layer: str) -> int:
        """Number of channels at a named layer."""
        idx = self.resolve_layers([layer])[0]
        for i in range(idx, -1, -1):
            m = self.features[i]
            if isinstance(m, nn.Conv2d):
                return int(m.out_channels)
        raise AssertionError("every named layer follows a convolution")

    def resolve_layers(self, layers: Iterable[str]) -> list[int]:
        """Indices in ``features`` of the named layers; :class:`InputError` for unknown names."""
        out = []
        for name in layers:
            if name not in self.layer_index:
                raise InputError(
                    f"{self.arch} has no layer {name!r}; choose from "
                    f"{', '.join(n for n in self.layer_index if n.startswith('relu'))} "
                    f"(or the conv*/pool* names)")
            out.append(self.layer_index[name])
        return out

    def forward(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """Features of (B, 3, H, W) ``x`` at the named ``layers`` (runs only as deep as needed)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"{self.arch} features need a (B, 3, H, W) tensor, got "
                             f"{tuple(x.shape)}")
        wanted = self.resolve_layers(layers)
        if not wanted:
            return {}
        by_index = {idx: name for name, idx in zip(layers, wanted)}
        out: dict[str, Tensor] = {}
        last = max(wanted)
        h = x
        for idx, module in enumerate(self.features):
            if idx > last:
                break
            if isinstance(module, nn.MaxPool2d):
                k = int(module.kernel_size)  # type: ignore[arg-type]
                if min(h.shape[-2:]) < k:
                    raise InputError(
                        f"input {tuple(x.shape[-2:])} is too small for layer {idx} of "
                        f"{self.arch} (feature map {tuple(h.shape[-2:])} < pool {k}); use larger "
                        f"images or shallower layers")
            h = module(h)
            if idx in by_index:
                out[by_index[idx]] = h
        return {name: out[name] for name in layers}


def build_backbone(arch: str) -> FeatureStack:
    """A frozen feature stack with random (PyTorch default) weights: for tests and shapes."""
    return FeatureStack(arch).freeze()


def imagenet_normalize(x: Tensor) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (x - ImageNet mean) / ImageNet std, per channel."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"ImageNet normalisation needs a (B, 3, H, W) RGB tensor, got "
                         f"{tuple(x.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def extract_features(backbone: FeatureStack, x: Tensor, layers: Sequence[str], *,
                     normalize: bool = True) -> dict[str, Tensor]:
    """Features at ``layers`` of (B, 3, H, W) RGB ``x`` in [0, 1], ImageNet-normalised first."""
    return backbone(imagenet_normalize(x) if normalize else x, layers)


def _read_state_dict(path: Path) -> Mapping[str, object]:
    """The tensors of a weights file, read like a model checkpoint
    (:func:`stereosr.models.checkpoint.read_checkpoint`: ``.pth`` with
    ``weights_only=True`` and pickled code refused by name, zip bombs refused from the
    directory, ``.safetensors`` by content)."""
    from .models.checkpoint import read_checkpoint

    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    obj: Mapping[str, object] = read_checkpoint(path)[0]
    if isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # type: ignore[assignment]
    return obj


def load_backbone_state_dict(stack: FeatureStack, state: Mapping[str, object],
                             source: str = "weights") -> None:
    """Copy torchvision-format ``features.N.*`` tensors into ``stack`` (strict, shape-checked).

    ``classifier.*`` keys are ignored; a ``module.`` prefix is stripped. Missing or unexpected
    feature keys and shape mismatches raise :class:`CheckpointError`.
    """
    own = stack.features.state_dict()
    found: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for key, value in state.items():
        k = key.removeprefix("module.")
        if k.startswith("classifier."):
            continue
        if not k.startswith("features.") or k[len("features."):] not in own:
            unexpected.append(key)
            continue
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{source}: {key} is not a tensor")
        found[k[len("features."):]] = value
    if unexpected:
        raise CheckpointError(
            f"{source}: keys {unexpected[:3]} do not belong to a torchvision {stack.arch} "
            f"(expected features.N.weight/bias)")
    missing = [f"features.{k}" for k in own if k not in found]
    if missing:
        raise CheckpointError(
            f"{source}: missing {len(missing)} {stack.arch} tensors, e.g. {missing[0]}; is this "
            f"a torchvision {stack.arch} weight file?")
    for k, v in found.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(
                f"{source}: features.{k} has shape {tuple(v.shape)}, {stack.arch} expects "
                f"{tuple(own[k].shape)}; is this a {stack.arch} weight file?")
    from .models.checkpoint import check_finite

    check_finite({f"features.{k}": v for k, v in found.items()}, source)
    with torch.no_grad():
        stack.features.load_state_dict({k: v.to(torch.float32) for k, v in found.items()})


def _is_url(s: str) -> bool:
    return s.split("://", 1)[0].lower() in ("http", "https", "file", "ftp") and "://" in s


def load_backbone(arch: str, weights: str | os.PathLike[str] | None = None, *,
                  sha256: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                  progress: bool = True, param_name: str = "weights") -> FeatureStack:
    """A frozen, eval-mode ``arch`` feature stack with ImageNet (or given) weights.

    ``weights``: ``None`` for torchvision's official file (downloaded once into the cache, see
    :mod:`stereosr.hub`), a local ``.pth`` (loaded with ``weights_only=True``) or
    ``.safetensors`` path, or a URL (downloaded into the cache). The SHA-256 (``sha256``, full
    or a prefix; else the prefix in a torchvision-style file name such as
    ``vgg16-397923af.pth``; else, for the official file, its known hash) is checked wherever
    the file comes from: a cached copy, a local path or a fresh download. A mismatch raises
    :class:`~stereosr.hub.DownloadError` (an :class:`InputError`); a local file whose name
    carries no hash and with no ``sha256`` given is used as it is. ``param_name``: how error
    messages call ``weights`` (callers that pass it on under another name).
    """
    key = _check_arch(arch)
    stack = FeatureStack(key)
    if weights is None:
        src = DEFAULT_WEIGHTS[key]
        path = download_or_explain(
            src.url, sha256 or src.sha256, f"no {key} ImageNet weights",
            f"pass {param_name}=PATH to a torchvision-format {key} .pth/.safetensors file",
            cache_dir=cache_dir, progress=progress)
    elif _is_url(str(weights)):
        url = str(weights)
        path = download(url, sha256=sha256 or hash_prefix_from_url(url), cache_dir=cache_dir,
                        progress=progress)
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InputError(f"{path}: {key} weights file not found")
        named = hash_prefix_from_name(path.name)
        if sha256:
            check_sha256(path, sha256, f"{key} weights file")
        elif named and not sha256_file(path).startswith(named):
            raise DownloadError(
                f"{key} weights file {path} has SHA-256 {sha256_file(path)[:16]}..., but its "
                f"name carries '{named}' where torchvision names put the start of the SHA-256: "
                "it is not that file (corrupt, truncated or another model), or those digits "
                "are no hash (a date?): then rename the file")
    load_backbone_state_dict(stack, _read_state_dict(path), source=str(path))
    return stack.freeze()
