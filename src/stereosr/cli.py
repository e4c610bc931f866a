"""The ``stereosr`` command line: thin subcommands over the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from .errors import StereoSRError

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except StereoSRError as exc:
        print(f"stereosr {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"stereosr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
