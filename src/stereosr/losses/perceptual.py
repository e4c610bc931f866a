"""Perceptual loss: distance between VGG features of the SR image and of the ground truth.

Inputs are (B, 3, H, W) RGB in [0, 1] (not clamped), ImageNet-normalised before the backbone.
Per layer, the mean L1 or squared difference over all feature elements; layers are combined
with their weights. The target's features are computed without a graph when the target needs
no gradient. The default layers are relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 of VGG-16,
each with weight 1 (inputs of at least 16 x 16 pixels reach relu5_3).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..backbones import FeatureStack, extract_features, load_backbone
from ..errors import InputError
from ._common import DISTANCES, check_choice, check_same_shape, mean_distance

__all__ = ["DEFAULT_PERCEPTUAL_LAYERS", "PerceptualLoss", "check_layer_weights",
           "perceptual_loss"]

DEFAULT_PERCEPTUAL_LAYERS: dict[str, float] = {
    "relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0, "relu5_3": 1.0}


def check_layer_weights(backbone: FeatureStack, layers: Mapping[str, float]) -> dict[str, float]:
    """Validated ``{layer name: weight}``: known layers, finite non-negative weights, not empty."""
    if not layers:
        raise InputError("at least one feature layer is needed")
    out: dict[str, float] = {}
    for name, w in layers.items():
        if name not in backbone.layer_index:
            backbone.resolve_layers([name])  # raises the InputError listing valid names
        wf = float(w)
        if not (wf >= 0 and wf < float("inf")):
            raise InputError(f"weight of layer {name!r} must be a finite number >= 0, got {w!r}")
        out[name] = wf
    return out


def _target_features(backbone: FeatureStack, hr: Tensor, layers: list[str],
                     normalize: bool) -> dict[str, Tensor]:
    if hr.requires_grad:
        return extract_features(backbone, hr, layers, normalize=normalize)
    with torch.no_grad():
        return extract_features(backbone, hr, layers, normalize=normalize)


def perceptual_loss(sr: Tensor, hr: Tensor, backbone: FeatureStack,
                    layers: Mapping[str, float] = DEFAULT_PERCEPTUAL_LAYERS,
                    distance: str = "l1", normalize: bool = True) -> Tensor:
    """sum_l w_l * mean(|phi_l(sr) - phi_l(hr)|) ('l1') or mean of squares ('mse'), a scalar.

    ``sr``, ``hr``: (B, 3, H, W) RGB in [0, 1]. ``backbone``: a feature stack (e.g.
    ``load_backbone('vgg16')``). ``normalize``: apply ImageNet normalisation first.
    """
    check_same_shape(sr, hr, ("SR", "HR"))
    if sr.shape[1] != 3:
        raise InputError(f"the perceptual loss needs RGB (B, 3, H, W) images, got "
                         f"{tuple(sr.shape)}; repeat a grey channel 3 times")
    kind = check_choice(distance, DISTANCES, "perceptual distance")
    weights = check_layer_weights(backbone, layers)
    names = list(weights)
    f_sr = extract_features(backbone, sr, names, normalize=normalize)
    f_hr = _target_features(backbone, hr, names, normalize)
    total = sr.new_zeros(())
    for name, w in weights.items():
        if w:
            total = total + w * mean_distance(f_sr[name], f_hr[name], kind)
    return total


class PerceptualLoss(nn.Module):
    """Module form of :func:`perceptual_loss` holding a frozen VGG (no trainable parameters).

    ``weights``: see :func:`stereosr.backbones.load_backbone` (None = torchvision's ImageNet file
    from the cache or its official URL; a path; a URL). ``backbone``: use this stack instead.
    """

    def __init__(self, layers: Mapping[str, float] | None = None, distance: str = "l1", *,
                 arch: str = "vgg16", weights: str | os.PathLike[str] | None = None,
                 sha256: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                 backbone: FeatureStack | None = None, normalize: bool = True) -> None:
        super().__init__()
        self.distance = check_choice(distance, DISTANCES, "perceptual distance")
        self.backbone = backbone.freeze() if backbone is not None else load_backbone(
            arch, weights, sha256=sha256, cache_dir=cache_dir)
        self.layers = check_layer_weights(
            self.backbone, DEFAULT_PERCEPTUAL_LAYERS if layers is None else layers)
        self.normalize = normalize

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return perceptual_loss(sr, hr, self.backbone, self.layers, self.distance, self.normalize)

    def extra_repr(self) -> str:
        return f"arch={self.backbone.arch}, layers={self.layers}, distance={self.distance}"
