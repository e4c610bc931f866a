"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..io import temp_file_beside

__all__ = [
    "add_device_arg",
    "add_precision_arg",
    "check_free",
    "commit_files",
    "parse_size",
    "probe_writable",
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


def add_precision_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default=None, choices=["fp32", "tf32", "bf16", "fp16"],
                        help="numeric precision of the model (default: fp16 on CUDA with "
                             "float32 statistics and residuals, fp32 on the CPU)")


def probe_writable(folder: Path) -> Path:
    """Create ``folder`` if needed and prove it is writable by creating a temporary file."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder; choose another output folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".stereosr-probe-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputError(f"{folder}: output folder is not writable ({exc.strerror}); choose "
                         "another folder with -o") from None
    return folder


def check_free(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse when any output exists (unless ``overwrite``), before anything is written."""
    if overwrite:
        return
    existing = [p for p in paths if p.exists()]
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise InputError(f"{existing[0]}{more} already exist(s); pass --overwrite to replace, "
                         "or choose another output folder")


def commit_files(items: Sequence[tuple[Path, bytes]], overwrite: bool) -> None:
    """Write several files so that either all of them appear or none: temporaries first, then
    renames (a crash between renames can leave earlier files of the group, never partial ones)."""
    check_free([p for p, _ in items], overwrite)
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in items:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = temp_file_beside(path)
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, path in temps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
