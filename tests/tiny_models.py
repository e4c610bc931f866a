"""Tiny random NAFSSR checkpoints for command tests (seconds to run, outputs far from identity)."""

from __future__ import annotations

from pathlib import Path

import torch

from stereosr.models import NAFSSR, NAFSSRConfig
from stereosr.models.checkpoint import save_model


def save_tiny_model(path: Path, seed: int, *, scale: int = 2, num_blocks: int = 1,
                    std: float = 0.2) -> Path:
    """A width-8 NAFSSR with normal random weights (``std``; 0.05 for beta/gamma) saved as
    .safetensors at ``path``; returns ``path``."""
    torch.manual_seed(seed)
    model = NAFSSR(NAFSSRConfig(width=8, num_blocks=num_blocks, scale=scale))
    for name, p in model.named_parameters():
        torch.nn.init.normal_(p, std=0.05 if name.endswith(("beta", "gamma")) else std)
    return save_model(model, path)
