"""Texture (style) loss: distance between Gram matrices of VGG-19 features of SR and HR.

Gram matrix of (B, C, H, W) features F: G = F F^T / (C * H * W), shape (B, C, C), computed in
at least float32. The loss per layer is the mean squared ('mse', default) or absolute ('l1')
difference of the Gram matrices; layers are combined with their weights. Default layers:
relu2_1, relu3_1, relu4_1 of VGG-19 (weight 1 each); inputs (B, 3, H, W) RGB in [0, 1], at
least 8 x 8 pixels for relu4_1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..backbones import FeatureStack, extract_features, load_backbone
from ..errors import InputError
from ._common import (
    DISTANCES,
    as_float,
    check_choice,
    check_images,
    check_same_shape,
    mean_distance,
)
from .perceptual import check_layer_weights

__all__ = ["DEFAULT_TEXTURE_LAYERS", "TextureLoss", "gram_matrix", "texture_loss"]

DEFAULT_TEXTURE_LAYERS: dict[str, float] = {"relu2_1": 1.0, "relu3_1": 1.0, "relu4_1": 1.0}


def gram_matrix(features: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, C) channel correlations divided by C * H * W."""
    check_images(features, "features")
    f = as_float(features)
    b, c, h, w = f.shape
    flat = f.reshape(b, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def texture_loss(sr: Tensor, hr: Tensor, backbone: FeatureStack,
                 layers: Mapping[str, float] = DEFAULT_TEXTURE_LAYERS,
                 distance: str = "mse", normalize: bool = True) -> Tensor:
    """sum_l w_l * mean((G_l(sr) - G_l(hr))^2) (or absolute difference for 'l1'), a scalar."""
    check_same_shape(sr, hr, ("SR", "HR"))
    if sr.shape[1] != 3:
        raise InputError(f"the texture loss needs RGB (B, 3, H, W) images, got "
                         f"{tuple(sr.shape)}; repeat a grey channel 3 times")
    kind = check_choice(distance, DISTANCES, "texture distance")
    weights = check_layer_weights(backbone, layers)
    names = list(weights)
    f_sr = extract_features(backbone, sr, names, normalize=normalize)
    if hr.requires_grad:
        g_hr = {n: gram_matrix(f) for n, f in
                extract_features(backbone, hr, names, normalize=normalize).items()}
    else:
        with torch.no_grad():
            g_hr = {n: gram_matrix(f) for n, f in
                    extract_features(backbone, hr, names, normalize=normalize).items()}
    total = as_float(sr).new_zeros(())
    for name, w in weights.items():
        if w:
            total = total + w * mean_distance(gram_matrix(f_sr[name]), g_hr[name], kind)
    return total


class TextureLoss(nn.Module):
    """Module form of :func:`texture_loss` holding a frozen VGG-19 (no trainable parameters)."""

    def __init__(self, layers: Mapping[str, float] | None = None, distance: str = "mse", *,
                 arch: str = "vgg19", weights: str | os.PathLike[str] | None = None,
                 sha256: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                 backbone: FeatureStack | None = None, normalize: bool = True) -> None:
        super().__init__()
        self.distance = check_choice(distance, DISTANCES, "texture distance")
        self.backbone = backbone.freeze() if backbone is not None else load_backbone(
            arch, weights, sha256=sha256, cache_dir=cache_dir)
        self.layers = check_layer_weights(
            self.backbone, DEFAULT_TEXTURE_LAYERS if layers is None else layers)
        self.normalize = normalize

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return texture_loss(sr, hr, self.backbone, self.layers, self.distance, self.normalize)

    def extra_repr(self) -> str:
        return f"arch={self.backbone.arch}, layers={self.layers}, distance={self.distance}"
