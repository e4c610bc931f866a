"""Locate and build the official NAFSSR (megvii-research/NAFNet) for benchmarks and tests.

The official code is not part of stereosr: it is read from a checkout holding
``load_official.py`` (the project keeps one in ``../shared/reference`` beside the repository).
Set ``STEREOSR_OFFICIAL`` to point elsewhere.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def find_reference() -> Path | None:
    """Folder holding ``load_official.py``, or ``None``."""
    env = os.environ.get("STEREOSR_OFFICIAL")
    candidates = [Path(env)] if env else []
    candidates += [p / "shared" / "reference" for p in (ROOT, ROOT.parent, ROOT.parent.parent)]
    for c in candidates:
        if (c / "load_official.py").is_file():
            return c
    return None


def official_from(model: Any, train_size: tuple[int, int] = (30, 90)) -> Any:
    """The official NAFSSR with ``model``'s architecture and weights, in eval mode, with TLC
    for ``train_size`` LR patches (on training-sized patches the local pool is the global
    mean, so the same model serves training). Raises ``FileNotFoundError`` when the official
    code is not found."""
    ref = find_reference()
    if ref is None:
        raise FileNotFoundError("official NAFSSR code not found: set STEREOSR_OFFICIAL to the "
                                "folder holding load_official.py")
    if str(ref) not in sys.path:
        sys.path.insert(0, str(ref))
    from load_official import official_nafssr

    cfg = model.config
    net = official_nafssr(scale=cfg.scale, width=cfg.width, num_blocks=cfg.num_blocks,
                          train_size=(1, 6, *train_size))
    net.load_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    return net.eval()


class SixChannel:
    """The official model behind the ``model(left, right) -> (sr_left, sr_right)`` call."""

    def __init__(self, net: Any) -> None:
        self.net = net

    def __call__(self, left: Any, right: Any) -> tuple[Any, Any]:
        import torch

        out = self.net(torch.cat([left, right], dim=1))
        return out[:, :3], out[:, 3:]
