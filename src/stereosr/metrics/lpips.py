"""LPIPS, the learned perceptual distance of Zhang et al. (CVPR 2018), version 0.1.

distance(x, y) = sum over 5 layers l of mean over pixels of  w_l . (f_l(x) - f_l(y))^2

where f_l are backbone features (AlexNet: relu1..relu5; VGG-16: relu1_2, relu2_2, relu3_3,
relu4_3, relu5_3) divided by their Euclidean norm over channels at each pixel, and w_l >= 0 is a
learned per-channel weight (a 1 x 1 convolution without bias, one output). Before the backbone,
images in [-1, 1] are shifted and scaled per channel by (-0.030, -0.088, -0.188) and
(0.458, 0.448, 0.450), the convention the released heads were trained with.

Weights: the backbone is torchvision's ImageNet AlexNet / VGG-16 (see
:func:`stereosr.backbones.load_backbone`: cached, checksummed download or a local file); the
linear heads are the files ``lpips/weights/v0.1/{alex,vgg}.pth`` of the ``lpips`` package
(``pip install --no-deps lpips`` is enough; it is never imported), found in the installed
package, in the cache folder as ``lpips-v0.1-{alex,vgg}.pth`` or downloaded there from the
package's repository; or any file with the same keys (``lin0.model.1.weight`` ..
``lin4.model.1.weight``, shapes (1, C_l, 1, 1)) given as a path. The official heads are
checked against their SHA-256 (:data:`LPIPS_HEADS`) wherever they come from.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbones import FeatureStack, WeightsSource, load_backbone
from ..errors import CheckpointError, InputError
from ..hub import check_sha256, download_or_explain
from ._image import Image, to_scoring_array

__all__ = [
    "LPIPS",
    "LPIPS_HEADS",
    "LPIPS_LAYERS",
    "LPIPS_NETS",
    "LpipsNet",
    "load_lpips",
    "load_lpips_heads",
    "lpips_distance",
    "lpips_from_arrays",
    "lpips_heads_path",
]

LpipsNet = Literal["alex", "vgg"]
LPIPS_NETS: dict[str, str] = {"alex": "alexnet", "vgg": "vgg16"}
LPIPS_LAYERS: dict[str, tuple[str, ...]] = {
    "alex": ("relu1", "relu2", "relu3", "relu4", "relu5"),
    "vgg": ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
}
_CHANNELS: dict[str, tuple[int, ...]] = {"alex": (64, 192, 384, 256, 256),
                                         "vgg": (64, 128, 256, 512, 512)}
#: The v0.1 linear heads as released in the ``lpips`` package (and its repository): URL and
#: full SHA-256 of ``lpips/weights/v0.1/{alex,vgg}.pth``.
LPIPS_HEADS: dict[str, WeightsSource] = {
    "alex": WeightsSource(
        "https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/"
        "v0.1/alex.pth", "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"),
    "vgg": WeightsSource(
        "https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/"
        "v0.1/vgg.pth", "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"),
}
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10


def _check_net(net: str) -> str:
    key = net.lower()
    if key not in LPIPS_NETS:
        raise InputError(f"unknown LPIPS network {net!r}; choose 'alex' or 'vgg'")
    return key


def lpips_heads_path(net: str) -> Path | None:
    """Path of the v0.1 linear heads shipped by an installed ``lpips`` package, else None."""
    key = _check_net(net)
    spec = importlib.util.find_spec("lpips")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "weights" / "v0.1" / f"{key}.pth"
        if path.is_file():
            return path
    return None


def _heads_cache_name(net: str) -> str:
    return f"lpips-v0.1-{net}.pth"


def _official_heads(key: str, cache_dir: str | os.PathLike[str] | None, progress: bool) -> Path:
    """The official heads file: the installed package's, else the cache's, else downloaded;
    checked against :data:`LPIPS_HEADS` in every case."""
    src = LPIPS_HEADS[key]
    found = lpips_heads_path(key)
    if found is not None:
        check_sha256(found, src.sha256, f"LPIPS {key} heads file of the installed lpips package")
        return found
    return download_or_explain(
        src.url, src.sha256, f"LPIPS {key} heads not found",
        f"`pip install --no-deps lpips` (its lpips/weights/v0.1/{key}.pth is that file), or pass "
        "heads=PATH", cache_dir=cache_dir, progress=progress, file_name=_heads_cache_name(key))


def load_lpips_heads(net: str, path: str | os.PathLike[str] | None = None, *,
                     sha256: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                     progress: bool = True) -> list[Tensor]:
    """The 5 linear-head weights of ``net`` as (1, C_l, 1, 1) float32 tensors, checked.

    ``path``: a state-dict file with keys ``lin{l}.model.1.weight`` (``.pth`` read with
    ``weights_only=True``, or ``.safetensors``), checked against ``sha256`` (full or a prefix)
    when given. ``None`` takes the official v0.1 heads (installed ``lpips`` package, else the
    cache folder, else a download; see the module docstring), always checked against
    :data:`LPIPS_HEADS`. Raises :class:`InputError` (missing file, checksum mismatch) or
    :class:`CheckpointError` (not an LPIPS heads file).
    """
    key = _check_net(net)
    if path is None:
        path = _official_heads(key, cache_dir, progress)
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"{p}: LPIPS heads file not found")
    if sha256 is not None:
        check_sha256(p, sha256, f"LPIPS {key} heads file")
    from ..models.checkpoint import read_checkpoint

    # read like a model checkpoint: pickled code refused by name, zip bombs from the directory
    state: Mapping[str, object] = read_checkpoint(p)[0]
    heads = []
    for i, c in enumerate(_CHANNELS[key]):
        name = f"lin{i}.model.1.weight"
        w = state.get(name, state.get(f"module.{name}"))
        if not isinstance(w, Tensor):
            raise CheckpointError(f"{p}: missing {name}; is this an LPIPS v0.1 {key} file?")
        if tuple(w.shape) != (1, c, 1, 1):
            raise CheckpointError(f"{p}: {name} has shape {tuple(w.shape)}, LPIPS-{key} needs "
                                  f"(1, {c}, 1, 1); is this the {key} heads file?")
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise CheckpointError(f"{p}: {name} has negative or non-finite weights")
        heads.append(w.detach().to(torch.float32).clone())
    return heads


class LPIPS(nn.Module):
    """LPIPS distance module: ``forward(x, y)`` -> (B,) distances, 0 for identical images.

    ``x``, ``y``: (B, 3, H, W) RGB in [0, 1]. Frozen (no trainable parameters) but
    differentiable with respect to the inputs, so it can serve as a loss.
    """

    def __init__(self, net: str, backbone: FeatureStack, heads: Sequence[Tensor]) -> None:
        super().__init__()
        self.net = _check_net(net)
        if backbone.arch != LPIPS_NETS[self.net]:
            raise InputError(f"LPIPS-{self.net} needs a {LPIPS_NETS[self.net]} backbone, got "
                             f"{backbone.arch}")
        self.layers = LPIPS_LAYERS[self.net]
        if len(heads) != len(self.layers):
            raise InputError(f"LPIPS needs {len(self.layers)} heads, got {len(heads)}")
        self.backbone = backbone.freeze()
        for i, w in enumerate(heads):
            self.register_buffer(f"head{i}", w.detach().to(torch.float32).clone())
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.min_size = _min_side(self.backbone, self.layers)
        self.eval()

    def _features(self, x: Tensor) -> dict[str, Tensor]:
        shift = self.get_buffer("shift").to(x.dtype)
        scale = self.get_buffer("scale").to(x.dtype)
        z = (2.0 * x - 1.0 - shift) / scale
        return self.backbone(z, self.layers)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"LPIPS needs two (B, 3, H, W) tensors of one shape, got "
                             f"{tuple(x.shape)} and {tuple(y.shape)}")
        if min(x.shape[-2:]) < self.min_size:
            raise InputError(
                f"LPIPS-{self.net} needs images of at least {self.min_size} x {self.min_size} "
                f"pixels (its {LPIPS_NETS[self.net]} layers shrink smaller ones to nothing), got "
                f"{x.shape[-1]} x {x.shape[-2]} (after any crop); score larger images or leave "
                "lpips out")
        fx, fy = self._features(x), self._features(y)
        total = x.new_zeros(x.shape[0])
        for i, layer in enumerate(self.layers):
            a, b = fx[layer], fy[layer]
            a = a / (torch.sqrt((a * a).sum(dim=1, keepdim=True)) + _EPS)
            b = b / (torch.sqrt((b * b).sum(dim=1, keepdim=True)) + _EPS)
            w = self.get_buffer(f"head{i}").to(a.dtype)
            total = total + F.conv2d((a - b) ** 2, w).mean(dim=(1, 2, 3))
        return total


def _min_side(stack: FeatureStack, layers: Sequence[str]) -> int:
    """Smallest square input side for which every layer of ``stack`` up to the deepest of
    ``layers`` has a non-empty output (pools need at least their kernel), from the standard
    output-size formula of convolutions and pools (no padding rule of our own)."""
    last = max(stack.resolve_layers(layers))

    def fits(side: int) -> bool:
        for module in list(stack.features)[:last + 1]:
            if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
                k, st, pad, dil = (_first(getattr(module, a)) for a in
                                   ("kernel_size", "stride", "padding", "dilation"))
                if isinstance(module, nn.MaxPool2d) and side + 2 * pad < k:
                    return False
                side = (side + 2 * pad - dil * (k - 1) - 1) // st + 1
                if side < 1:
                    return False
        return True

    return next(side for side in range(1, 1 << 12) if fits(side))


def _first(v: int | Sequence[int]) -> int:
    return int(v if isinstance(v, int) else v[0])


def load_lpips(net: LpipsNet = "alex", *, backbone_weights: str | os.PathLike[str] | None = None,
               sha256: str | None = None, heads: str | os.PathLike[str] | None = None,
               heads_sha256: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
               progress: bool = True, device: str | torch.device | None = None) -> LPIPS:
    """An LPIPS module with ImageNet backbone weights and v0.1 heads.

    ``backbone_weights``: ``None`` (torchvision's file, downloaded once into the cache), a
    local file or a URL, checked against ``sha256`` (see
    :func:`stereosr.backbones.load_backbone`). ``heads``, ``heads_sha256``: see
    :func:`load_lpips_heads`. Both files are found (or refused) before either is read.
    """
    key = _check_net(net)
    head_weights = load_lpips_heads(key, heads, sha256=heads_sha256, cache_dir=cache_dir,
                                    progress=progress)
    backbone = load_backbone(LPIPS_NETS[key], backbone_weights, sha256=sha256,
                             cache_dir=cache_dir, progress=progress,
                             param_name="backbone_weights")
    model = LPIPS(key, backbone, head_weights)
    return model.to(device) if device is not None else model


def _array_batch(a: np.ndarray) -> Tensor:
    """(C, H, W) 0..255 scoring array -> (1, 3, H, W) float32 in [0, 1] (grey repeated)."""
    a = a / 255.0
    if a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    return torch.from_numpy(a[None].astype(np.float32))


@torch.no_grad()
def lpips_from_arrays(model: LPIPS, sr: np.ndarray, hr: np.ndarray) -> float:
    """LPIPS of two (C, H, W) arrays on the 0..255 scale (the metrics' scoring arrays, see
    :func:`stereosr.metrics._image.to_scoring_array`); C is 3, or 1 (repeated to RGB)."""
    x, y = _array_batch(sr), _array_batch(hr)
    if x.shape != y.shape:
        raise InputError(f"SR and HR differ in size ({x.shape[-1]}x{x.shape[-2]} vs "
                         f"{y.shape[-1]}x{y.shape[-2]})")
    device = next(model.buffers()).device
    value = float(model(x.to(device), y.to(device))[0])
    if not np.isfinite(value):
        raise InputError("LPIPS is not finite for these images; check the inputs and weights")
    return value


def lpips_distance(model: LPIPS, sr: Image, hr: Image) -> float:
    """LPIPS between one SR image and its HR reference (lower is better).

    Images: (H, W[, C]) arrays or (C, H, W) tensors, uint8/uint16 or float in [0, 1]
    (quantised to 8 bits like the other metrics); grey images are repeated to RGB.
    """
    return lpips_from_arrays(model, to_scoring_array(sr, "SR image"),
                             to_scoring_array(hr, "HR image"))
