"""Helpers of the training tests: synthetic stereo pairs and tiny configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image


def make_pairs(root: Path, n: int = 3, hw: tuple[int, int] = (96, 288), seed: int = 0) -> Path:
    """Synthetic Flickr1024-layout pairs: blurred random texture + noise, constant disparity
    d = 4 + 2 i (right[:, x] = left[:, x + d])."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    h, w = hw
    for i in range(n):
        d = 4 + 2 * i
        base = rng.random((h // 8 + 2, (w + d) // 8 + 2, 3))
        big = np.asarray(Image.fromarray((base * 255).astype(np.uint8)).resize(
            (w + d, h), Image.BICUBIC), dtype=np.float64)
        big += rng.normal(0, 12, big.shape)
        img = np.clip(big, 0, 255).astype(np.uint8)
        Image.fromarray(img[:, :w]).save(root / f"{i + 1:04d}_L.png")
        Image.fromarray(img[:, d:d + w]).save(root / f"{i + 1:04d}_R.png")
    return root


def tiny_config(data_root: Path, run_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A width-8, 2-block x2 model on 12x36 LR patches, 1 thread, no progress bar."""
    cfg: dict[str, Any] = {
        "name": "test",
        "model": {"variant": "T", "scale": 2, "width": 8, "num_blocks": 2, "drop_path": 0.0},
        "data": {"train_root": str(data_root), "lr_patch": [12, 36], "batch_size": 2},
        "optim": {"lr": 2e-3},
        "schedule": {"total_iters": 6, "eta_min": 1e-5},
        "loss": {"terms": [{"type": "mse"}]},
        "train": {"run_dir": str(run_dir), "seed": 1, "checkpoint_every": 3, "keep_last": 2,
                  "log_every": 2, "threads": 1, "progress": False, "tensorboard": False},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path
