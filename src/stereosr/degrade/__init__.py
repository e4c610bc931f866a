"""Degradations that turn HR stereo pairs into LR pairs: MATLAB bicubic and realistic ones."""

from __future__ import annotations

from .bicubic import imresize, imresize_torch
from .realistic import DegradationConfig, bicubic_pair, degrade_pair

__all__ = ["DegradationConfig", "bicubic_pair", "degrade_pair", "imresize", "imresize_torch"]
