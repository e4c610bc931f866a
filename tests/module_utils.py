"""Import a repository file that is not part of the package (scripts/, benchmarks/) in tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def load_repo_module(relpath: str) -> ModuleType:
    """The module of ``REPO/relpath``, named by its file stem; loaded once per test session.

    It is registered in ``sys.modules`` before it runs, as dataclasses and pickling need.
    """
    path = REPO / relpath
    name = path.stem
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
