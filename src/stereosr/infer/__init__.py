"""Inference: row tiling, stereo self-ensemble and the upscale pipeline."""

from .ensemble import ensemble_transforms, self_ensemble
from .tiling import tiled_forward
from .upscale import upscale, upscale_tensors

__all__ = [
           "ensemble_transforms",
           "self_ensemble",
           "tiled_forward",
           "upscale",
           "upscale_tensors",
]
