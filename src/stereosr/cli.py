"""The ``stereosr`` command line: thin subcommands over the library."""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from types import FrameType, ModuleType
from typing import Any

from .errors import StereoSRError, StereoSRWarning

__all__ = ["build_parser", "main"]


def _command_modules() -> list[ModuleType]:
    from .commands import (
        convert,
        degrade,
        demo,
        evaluate,
        export,
        make_patches,
        models,
        synth,
        train,
        upscale,
    )

    return [demo, upscale, evaluate, degrade, make_patches, synth, train, convert, export, models]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="stereosr", description="Stereo image super-resolution with NAFSSR.")
    parser.add_argument("--version", action="version", version=f"stereosr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        module.add_parser(sub)
    for name, command in sub.choices.items():
        if name in _READS_IMAGES:
            command.add_argument(
                "--max-pixels", type=int, default=None, metavar="N",
                help="refuse images whose header declares more than N pixels (width x height), "
                     "a guard against decompression bombs (default: 150000000)")
    return parser


#: subcommands that read images, and so take --max-pixels
_READS_IMAGES = ("demo", "upscale", "evaluate", "degrade", "make-patches", "synth", "train")


def _run(args: argparse.Namespace) -> int:
    limit = getattr(args, "max_pixels", None)
    if limit is None:
        return int(args.func(args) or 0)
    from .io import pixel_limit

    with pixel_limit(limit):
        return int(args.func(args) or 0)


#: library wording (API parameters) -> command-line wording (flags)
_CLI_WORDING = ((re.compile(r"pass a larger max_pixels"), "pass a larger --max-pixels"),
                (re.compile(r"^max_pixels must be a positive whole number of pixels or None"),
                 "--max-pixels must be a positive whole number of pixels"),
                (re.compile(r"pass key='([^']*)'"), r"pass --key \1"),
                (re.compile(r"pass key= "), "pass --key "),
                (re.compile(r"\boverwrite=True\b"), "--overwrite"),
                (re.compile(r"\bon_error='skip'"), "--skip-bad"),
                (re.compile(r"\bskip_bad=True\b"), "--skip-bad"),
                (re.compile(r"\bskip_existing=True\b"), "--skip-existing"),
                (re.compile(r"\bresume \(resume=True\)"), "--resume"),
                (re.compile(r"\bresume=True\b"), "--resume"),
                (re.compile(r"\bdevice='(\w+)'"), r"--device \1"),
                (re.compile(r"\bscale=(\d+)"), r"--scale \1"),
                (re.compile(r"\bscale=N\b"), "--scale N"),
                (re.compile(r"\bopset=(\d+)"), r"--opset \1"),
                (re.compile(r"^override "), "--set "))


def _cli_wording(msg: str) -> str:
    for pattern, repl in _CLI_WORDING:
        msg = pattern.sub(repl, msg)
    return msg


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the command stops, leaves no partial file, exits 143."""


@contextlib.contextmanager
def _cli_context(command: str) -> Iterator[None]:
    """One-line warnings, and SIGTERM raised as :class:`Terminated` (main thread only)."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if issubclass(category, StereoSRWarning):
            print(f"stereosr {command}: warning: {_cli_wording(str(message))}",
                  file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    with warnings.catch_warnings():
        default = warnings.showwarning
        warnings.showwarning = show
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGTERM, on_term)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status: 0 done, 2 bad input (one line on stderr),
    3 training diverged, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _cli_context(args.command):
            return _run(args)
    except StereoSRError as exc:
        print(f"stereosr {args.command}: error: {_cli_wording(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        term = isinstance(exc, Terminated)
        print(f"stereosr {args.command}: {'terminated' if term else 'interrupted'}",
              file=sys.stderr)
        return 143 if term else 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
