"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ..files import check_free, commit_files, probe_folder

__all__ = [
    "add_device_arg",
    "add_precision_arg",
    "check_free",
    "check_output_file",
    "commit_files",
    "parse_size",
]


def parse_size(text: str) -> tuple[int, int]:
    """'30x90' -> (30, 90) (height x width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW like 30x90, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to run the model (default: auto = cuda > mps > cpu)")


def add_precision_arg(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--precision``; ``default=None`` leaves the choice to the device (fp16 on CUDA)."""
    if default is None:
        said = ("fp16 on CUDA with float32 statistics and residuals, fp32 on the CPU")
    else:
        said = f"{default} on every device"
    parser.add_argument("--precision", default=default, choices=["fp32", "tf32", "bf16", "fp16"],
                        help=f"numeric precision of the model (default: {said})")


def check_output_file(path: Path, overwrite: bool) -> None:
    """Before any work: ``path`` can be written (its folder exists and takes files; it is not a
    folder; it does not exist unless ``overwrite``)."""
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name")
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: folder for {path.name} does not exist; create it or "
                         "choose another path")
    check_free([path], overwrite)
    probe_folder(path.parent)
