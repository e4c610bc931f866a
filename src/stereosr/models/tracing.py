"""Whether the model is being exported, traced or compiled.

Kept apart from the model code so that every module can ask without importing the others.
"""

from __future__ import annotations

import torch

__all__ = ["is_exporting", "is_tracing"]


def is_tracing() -> bool:
    """True while the model is exported, traced or compiled: the model then takes its
    graph-friendly code paths (no Python branches on sizes or values, no in-place updates,
    no custom autograd functions)."""
    return bool(torch.compiler.is_exporting() or torch.compiler.is_compiling()
                or torch.jit.is_tracing() or torch.jit.is_scripting())


def is_exporting() -> bool:
    """True while the model is exported (``torch.export``, ONNX) or traced / scripted by
    TorchScript, but not while ``torch.compile`` compiles it."""
    return bool(torch.compiler.is_exporting() or torch.jit.is_tracing()
                or torch.jit.is_scripting())
