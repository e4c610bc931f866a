#!/usr/bin/env python3
"""Deepen a trained NAFSSR without changing what it computes, to keep training it larger.

Each trained stereo block keeps its weights and is followed by ``--factor - 1`` new blocks.
A new block is randomly initialised like a fresh NAFSSR block, except the four residual scales
of NAFNet (``blk.beta``, ``blk.gamma``) and of SCAM (``fusion.beta``, ``fusion.gamma``),
which start at zero, as in a fresh NAFSSR: with zero scales a block returns its inputs, so the
deeper model gives the same SR views as the trained one (checked here to float32 rounding before
anything is written). Training then starts from the trained model's quality with more depth to
use, the function-preserving growth of Net2Net's "deeper" operator (Chen et al., ICLR 2016).

    python scripts/grow_depth.py --weights stereosr-x4 --factor 2 --out grown.safetensors
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

from stereosr.errors import InputError, StereoSRError
from stereosr.models.checkpoint import load_model, save_model
from stereosr.models.nafssr import NAFSSR, NAFSSRConfig

RESIDUAL_SCALES = ("blk.beta", "blk.gamma", "fusion.beta", "fusion.gamma")
# Provenance of a packaged model that the grown one carries on (its training stages and photos),
# so that packaging a model trained from the grown one lists its whole history.
CARRIED_METADATA = ("stages", "training_photos")
_BLOCK_KEY = re.compile(r"^body\.(\d+)\.(.*)$")


def grow_depth(model: NAFSSR, factor: int, *, seed: int = 0) -> NAFSSR:
    """A NAFSSR with ``factor`` times the blocks of ``model`` and the same output.

    Block ``i`` of ``model`` becomes block ``factor * i``; the blocks in between are new, with
    zero residual scales. Raises :class:`InputError` for ``factor < 1`` or when the trained
    model's residual-scale keys are not the NAFSSR ones.
    """
    if factor < 1:
        raise InputError(f"--factor must be >= 1, got {factor}")
    cfg = model.config
    torch.manual_seed(seed)
    deep = NAFSSR(NAFSSRConfig(**{**cfg.to_dict(), "num_blocks": cfg.num_blocks * factor}))
    new_sd = deep.state_dict()
    for key, value in model.state_dict().items():
        m = _BLOCK_KEY.match(key)
        target = f"body.{int(m.group(1)) * factor}.{m.group(2)}" if m else key
        if target not in new_sd:
            raise InputError(f"{key}: not a NAFSSR weight key; cannot grow this model")
        new_sd[target] = value.detach().clone()
    zeroed = 0
    for key in new_sd:
        m = _BLOCK_KEY.match(key)
        if m and int(m.group(1)) % factor and m.group(2).endswith(RESIDUAL_SCALES):
            new_sd[key] = torch.zeros_like(new_sd[key])
            zeroed += 1
    if zeroed != 4 * cfg.num_blocks * (factor - 1):
        raise InputError(f"expected {4 * cfg.num_blocks * (factor - 1)} residual scales to zero, "
                         f"found {zeroed}: the block layout is not NAFSSR's")
    deep.load_state_dict(new_sd, strict=True)
    return deep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="trained model (name or .safetensors)")
    ap.add_argument("--factor", type=int, default=2, help="blocks per trained block (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the new blocks' weights")
    ap.add_argument("--out", type=Path, required=True, help="output .safetensors")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    if args.out.is_dir():
        print(f"grow_depth: {args.out} is a folder; give a .safetensors file name", file=sys.stderr)
        return 2
    if args.out.exists() and not args.overwrite:
        print(f"grow_depth: {args.out} already exists; pass --overwrite to replace it",
              file=sys.stderr)
        return 2
    try:
        model = load_model(args.weights, device="cpu", tlc=False).eval()
        deep = grow_depth(model, args.factor, seed=args.seed).eval()
        g = torch.Generator().manual_seed(1)
        left, right = torch.rand(2, 1, 3, 24, 40, generator=g)
        with torch.no_grad():
            diff = max((a - b).abs().max().item()
                       for a, b in zip(deep(left, right), model(left, right)))
        if diff > 1e-5:
            raise InputError(f"the grown model's output differs by {diff:.2e}; nothing written")
        meta = model.checkpoint_metadata  # read by load_model
        carried = {k: json.loads(meta[k]) for k in CARRIED_METADATA if k in meta}
        save_model(deep, args.out, {**carried, "grown_from": str(args.weights),
                                    "grow_factor": args.factor},
                   overwrite=args.overwrite)
    except StereoSRError as exc:
        print(f"grow_depth: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {deep.config.num_blocks} blocks (from {model.config.num_blocks}), "
          f"max output change {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
