"""``stereosr models``: list the registered model names."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("models", help="list the models that can be loaded by name")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models.registry import DEFAULT_MODEL, MODELS

    for name, entry in MODELS.items():
        state = "available" if entry.path.exists() else "missing"
        mark = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{mark}  [{state}]  {entry.description}")
    return 0
