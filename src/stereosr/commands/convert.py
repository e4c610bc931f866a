"""``stereosr convert``: official checkpoints -> our safetensors format."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import parse_size

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "convert", help="convert an official NAFSSR .pth into .safetensors with metadata",
        description="Convert an official NAFSSR checkpoint ({'params': ...}, {'params_ema': ...},"
                    " {'state_dict': ...} or a bare state dict) to .safetensors. Nothing in the "
                    "input is executed: pickles are opened with weights_only=True.")
    p.add_argument("input", type=Path, help="checkpoint to convert (.pth/.pt/.safetensors)")
    p.add_argument("output", type=Path, help="output .safetensors file")
    p.add_argument("--key", default=None,
                   help="entry holding the weights (default: params_ema, then params, ...)")
    p.add_argument("--train-size", type=parse_size, default=None, metavar="HxW",
                   help="training LR patch size recorded for TLC (default 30x90)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import convert_checkpoint, read_checkpoint

    out = convert_checkpoint(args.input, args.output, key=args.key, overwrite=args.overwrite,
                             train_size=args.train_size)
    _, meta = read_checkpoint(out)
    print(json.dumps({"output": str(out), "variant": meta.get("variant"),
                      "scale": int(meta["scale"]), "width": int(meta["width"]),
                      "num_blocks": int(meta["num_blocks"])}))
    return 0
