"""``stereosr train CONFIG.yaml [--set key=value ...] [--resume]``."""

from __future__ import annotations

import argparse
import signal
import sys

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a NAFSSR model from a YAML config",
        description="Train NAFSSR on stereo pairs as described by a YAML config (see "
        "docs/training.md). Under torchrun, runs data-parallel over the processes.")
    p.add_argument("config", help="YAML config file, or the name of a shipped config "
                   "(cpu_tiny, nafssr_t_x4_cpu, nafssr_t_x4, nafssr_s_x2, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=1e-3 (repeatable; values "
                   "are read as YAML)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in train.run_dir from its latest checkpoint")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.config import dump_config, load_config

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        sys.stdout.write(dump_config(cfg))
        return 0
    from ..runtime import env_world
    from ..train.loop import train

    result = train(cfg, resume=args.resume)
    if (result.interrupted or result.paused) and env_world()[0] == 0:
        print(f"stopped at iteration {result.iteration}; continue with --resume", file=sys.stderr)
    if result.interrupted:  # the shell's convention, as for the other commands
        return 143 if result.stop_signal == signal.SIGTERM else 130
    if result.final_model is not None:
        msg = f"trained {result.iteration} iterations; model: {result.final_model}"
        if result.best_model is not None and result.best_psnr is not None:
            msg += f"; best validation {result.best_psnr:.3f} dB: {result.best_model}"
        if result.skipped_nonfinite:
            msg += f"; {result.skipped_nonfinite} steps skipped (non-finite loss)"
        print(msg, file=sys.stderr)
    return 0
