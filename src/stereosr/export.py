"""Export a NAFSSR model to ONNX (dynamic batch, height and width) or to a ``torch.export``
program.

The exported graph takes ``left`` and ``right`` (B, 3, h, w) float32 in [0, 1] and returns
``sr_left`` and ``sr_right`` (B, 3, s*h, s*w). While exporting, the model takes its
size-independent code paths (see :func:`stereosr.models.tracing.is_tracing`):

- LayerNorm2d is one ``LayerNormalization`` over the channel axis of a channels-last view,
- the TLC local mean is computed for every input size by the same ops (cumulative sums,
  gathers at clamped indices, window size ``min(size, kernel)`` computed in the graph), so an
  input smaller than the window gets the global mean and a larger one the local mean, exactly
  as in eager mode,
- cross-attention uses two explicit softmaxes over all rows at once (no row chunking: memory
  grows with rows x W x W, so very large inputs are better tiled by the caller).

TorchScript is not supported (the model uses Python-level shape logic that ``torch.jit.script``
does not compile, and ``torch.jit.trace`` would freeze the TLC window decision to the example
size); ``torch.export`` is, see :func:`export_program`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import InputError
from .io import atomic_write_bytes
from .models.nafssr import NAFSSR
from .onnx_interface import INPUT_NAMES, OUTPUT_NAMES, metadata_props

__all__ = [
    "DEFAULT_OPSET",
    "StereoPairModule",
    "export_onnx",
    "export_program",
    "onnx_metadata",
    "save_program",
    "verification_sizes",
    "verify_onnx",
    "verify_program",
]

#: Default ONNX opset (LayerNormalization needs >= 17).
DEFAULT_OPSET = 18
MIN_OPSET = 17


class StereoPairModule(nn.Module):
    """``forward(left, right) -> (sr_left, sr_right)`` around an eval-mode copy of a model."""

    def __init__(self, model: NAFSSR) -> None:
        super().__init__()
        self.model = model

    def forward(self, left: Tensor, right: Tensor) -> tuple[Tensor, Tensor]:
        return self.model(left, right)  # type: ignore[no-any-return]


def _prepare(model: NAFSSR) -> StereoPairModule:
    m = copy.deepcopy(model).float().cpu().eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return StereoPairModule(m)


def _dynamic_shapes() -> dict[str, dict[int, Any]]:
    batch = torch.export.Dim("batch", min=1, max=1024)
    height = torch.export.Dim("height", min=2, max=1 << 15)
    width = torch.export.Dim("width", min=2, max=1 << 15)
    spec = {0: batch, 2: height, 3: width}
    return {"left": spec, "right": dict(spec)}


def _example(model: NAFSSR, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    # Batch 2 and sizes > 1 so that nothing is specialised to a constant while tracing.
    g = torch.Generator().manual_seed(0)
    shape = (2, model.config.in_channels, *size)
    return torch.rand(shape, generator=g), torch.rand(shape, generator=g)


def onnx_metadata(model: NAFSSR) -> dict[str, str]:
    """Metadata stored in the ONNX file (read back by the onnxruntime backend)."""
    from .models.tlc import tlc_train_size

    cfg = model.config
    return metadata_props(cfg.scale, cfg.width, cfg.num_blocks, tlc_train_size(model))


def export_program(model: NAFSSR, example_size: tuple[int, int] = (48, 144)
                   ) -> torch.export.ExportedProgram:
    """``torch.export`` program of ``model`` with dynamic batch, height and width.

    Run it with ``program.module()(left, right)``.
    """
    module = _prepare(model)
    return torch.export.export(module, _example(model, example_size),
                               dynamic_shapes=_dynamic_shapes())


def export_onnx(model: NAFSSR, path: str | os.PathLike[str], *, opset: int = DEFAULT_OPSET,
                overwrite: bool = False, example_size: tuple[int, int] = (48, 144)) -> Path:
    """Write ``model`` as an ONNX file with inputs ``left``/``right`` and outputs
    ``sr_left``/``sr_right``, dynamic in batch, height and width. Returns the path.

    The file is written atomically; an existing file is kept unless ``overwrite``.
    """
    out = Path(path)
    if opset < MIN_OPSET:
        raise InputError(f"opset={opset} is too old: LayerNormalization needs opset "
                         f">= {MIN_OPSET}")
    if out.exists() and not overwrite:
        raise InputError(f"{out}: already exists; pass overwrite=True to replace it")
    if out.suffix.lower() != ".onnx":
        raise InputError(f"{out}: the ONNX output must end in .onnx")
    try:
        import onnx
        import onnxscript  # noqa: F401
    except ImportError:
        raise InputError("ONNX export needs the onnx and onnxscript packages; install them "
                         "with `pip install 'stereosr[onnx]'`") from None
    module = _prepare(model)
    # The exporter reports progress on stdout and logs warnings about optional packages and
    # axis names: keep the CLI quiet.
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), open(os.devnull, "w") as devnull, \
                contextlib.redirect_stdout(devnull):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, _example(model, example_size), None, input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES), dynamic_shapes=_dynamic_shapes(),
                opset_version=opset, dynamo=True, verbose=False)
    finally:
        onnx_log.setLevel(level)
    if program is None:  # pragma: no cover - dynamo export always returns a program
        raise RuntimeError("ONNX export returned no program")
    program.optimize()
    proto = program.model_proto
    import onnx

    onnx.helper.set_model_props(proto, onnx_metadata(model))
    data = proto.SerializeToString()
    atomic_write_bytes(out, data, overwrite=overwrite)
    return out


def verification_sizes(model: NAFSSR) -> list[tuple[int, int]]:
    """Two LR sizes that exercise both TLC cases: inside the window and larger than it."""
    from .models.tlc import tlc_kernel, tlc_train_size

    size = tlc_train_size(model)
    if size is None:
        return [(20, 30), (33, 47)]
    kh, kw = tlc_kernel(size)
    return [(max(2, kh // 2), max(2, kw // 2)), (kh + 5, kw + 11)]


def _compare(model: NAFSSR, run: Any, tolerance: float, what: str) -> float:
    from .errors import StereoSRError

    m = copy.deepcopy(model).float().cpu().eval()
    worst = 0.0
    g = torch.Generator().manual_seed(1)
    for h, w in verification_sizes(model):
        left = torch.rand(1, m.config.in_channels, h, w, generator=g)
        right = torch.rand(1, m.config.in_channels, h, w, generator=g)
        with torch.inference_mode():
            ref = m(left, right)
        got = run(left, right)
        for a, b in zip(got, ref):
            # NaN-aware: max(0.0, nan) would be 0.0, hiding a model or file that gives NaN.
            d = float((torch.as_tensor(a) - b).abs().max())
            worst = d if math.isnan(d) or math.isnan(worst) else max(worst, d)
    if math.isnan(worst):
        raise StereoSRError(f"{what} or the PyTorch model gives NaN outputs (max |diff| is "
                            "nan); the model weights are likely not finite")
    if not worst <= tolerance:
        raise StereoSRError(f"{what} differs from the PyTorch model by {worst:.3g} (more than "
                            f"{tolerance:g}); the export is not usable")
    return worst


def verify_onnx(model: NAFSSR, path: str | os.PathLike[str], tolerance: float = 1e-3) -> float:
    """Max |onnxruntime - PyTorch| over two input sizes; raises if above ``tolerance``."""
    from .infer.onnx_backend import OnnxStereoModel

    session = OnnxStereoModel(path, device="cpu")
    return _compare(model, session, tolerance, f"ONNX file {path}")


def save_program(model: NAFSSR, path: str | os.PathLike[str], *, overwrite: bool = False
                 ) -> Path:
    """Write the :func:`export_program` of ``model`` (load with ``torch.export.load``)."""
    import io as _io

    out = Path(path)
    if out.exists() and not overwrite:
        raise InputError(f"{out}: already exists; pass overwrite=True to replace it")
    buf = _io.BytesIO()
    torch.export.save(export_program(model), buf)
    atomic_write_bytes(out, buf.getvalue(), overwrite=overwrite)
    return out


def verify_program(model: NAFSSR, path: str | os.PathLike[str], tolerance: float = 1e-4
                   ) -> float:
    """Max |loaded program - PyTorch| over two input sizes; raises if above ``tolerance``."""
    program = torch.export.load(str(path)).module()

    def run(left: Tensor, right: Tensor) -> Any:
        with torch.inference_mode():
            return program(left, right)

    return _compare(model, run, tolerance, f"program {path}")
