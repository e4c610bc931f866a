"""``stereosr export``: write a model as ONNX (dynamic batch/height/width) or a torch.export
program, and check the result against the PyTorch model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from ._common import check_output_file

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    from ..export import DEFAULT_OPSET

    p = sub.add_parser(
        "export", help="export a model to ONNX (or a torch.export program)",
        description="Export NAFSSR with inputs `left`, `right` (B,3,h,w float in [0,1]) and "
                    "outputs `sr_left`, `sr_right`; batch, height and width stay dynamic and the "
                    "test-time local converter is computed in the graph for any size. The "
                    "export is checked against PyTorch on two input sizes unless --no-verify.")
    p.add_argument("--onnx", type=Path, default=None, metavar="OUT.onnx", help="ONNX file")
    p.add_argument("--program", type=Path, default=None, metavar="OUT.pt2",
                   help="torch.export program file (load with torch.export.load)")
    p.add_argument("--weights", default=None, metavar="PATH|NAME",
                   help="checkpoint file or registered model name (default: the packaged model)")
    p.add_argument("--key", default=None, metavar="NAME",
                   help="checkpoint entry holding the weights (e.g. params or params_ema; "
                        "default: found automatically)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset (>= 17, default {DEFAULT_OPSET})")
    p.add_argument("--no-tlc", action="store_true",
                   help="export with global pooling instead of the test-time local converter")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the comparison of the export with PyTorch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.onnx is None and args.program is None:
        raise InputError("nothing to export: give --onnx OUT.onnx and/or --program OUT.pt2")
    from ..export import MIN_OPSET

    if args.onnx is not None and args.opset < MIN_OPSET:
        raise InputError(f"--opset {args.opset} is too old: LayerNormalization needs opset "
                         f">= {MIN_OPSET}")
    if args.onnx is not None and args.onnx.suffix.lower() != ".onnx":
        raise InputError(f"{args.onnx}: the ONNX output must end in .onnx")
    for path in (args.onnx, args.program):
        if path is not None:  # before the export work, which takes a while
            check_output_file(path, args.overwrite)
    from ..export import export_onnx, save_program, verify_onnx, verify_program
    from ..models.checkpoint import load_model
    from ..models.registry import DEFAULT_MODEL

    model = load_model(args.weights or DEFAULT_MODEL, device="cpu", tlc=not args.no_tlc,
                       key=args.key)
    summary: dict[str, Any] = {"scale": model.config.scale, "width": model.config.width,
                               "num_blocks": model.config.num_blocks}
    if args.onnx is not None:
        out = export_onnx(model, args.onnx, opset=args.opset, overwrite=args.overwrite)
        summary["onnx"] = str(out)
        summary["opset"] = args.opset
        if not args.no_verify:
            summary["onnx_max_abs_diff"] = verify_onnx(model, out)
    if args.program is not None:
        out = save_program(model, args.program, overwrite=args.overwrite)
        summary["program"] = str(out)
        if not args.no_verify:
            summary["program_max_abs_diff"] = verify_program(model, out)
    print(json.dumps(summary))
    return 0
