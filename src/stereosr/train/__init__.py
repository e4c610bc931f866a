"""Training NAFSSR: typed configs, the resumable loop, checkpoints and distributed helpers.

Import the submodules directly (``stereosr.train.loop.train``, ``stereosr.train.config``);
this package import stays cheap.
"""

from __future__ import annotations

__all__ = ["config", "data", "distributed", "logs", "loop", "losses", "optim", "state"]
