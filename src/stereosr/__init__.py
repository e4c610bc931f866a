"""stereosr: stereo image super-resolution with NAFSSR.

Public API (imported lazily, so ``import stereosr`` is cheap)::

    import stereosr
    model = stereosr.load_model("path/to/NAFSSR-T_4x.pth")   # or a registered name
    sr_left, sr_right = stereosr.upscale(left, right, model)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "NAFSSR": "stereosr.models.nafssr",
    "NAFSSRConfig": "stereosr.models.nafssr",
    "build_nafssr": "stereosr.models.nafssr",
    "enable_tlc": "stereosr.models.tlc",
    "disable_tlc": "stereosr.models.tlc",
    "load_model": "stereosr.models.checkpoint",
    "save_model": "stereosr.models.checkpoint",
    "upscale": "stereosr.infer.upscale",
    "imresize": "stereosr.degrade.bicubic",
    "StereoSRError": "stereosr.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]  # noqa: PLE0605 (a list of str, built once)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stereosr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
