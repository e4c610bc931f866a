"""The ``stereosr`` command line: thin subcommands over the library."""

from __future__ import annotations

import argparse
import re
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
                (re.compile(r"pass key='([^']*)'"), r"pass --key \1"),
                (re.compile(r"pass key= "), "pass --key "))


def _cli_wording(msg: str) -> str:
    for pattern, repl in _CLI_WORDING:
        msg = pattern.sub(repl, msg)
    return msg


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except StereoSRError as exc:
        print(f"stereosr {args.command}: error: {_cli_wording(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"stereosr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
