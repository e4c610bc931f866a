"""Run an exported NAFSSR ONNX file with onnxruntime behind the model's call signature.

``OnnxStereoModel(path)(left, right) -> (sr_left, sr_right)`` takes (B, 3, h, w) float views in
[0, 1], as torch tensors (returns tensors on the input's device) or numpy arrays (returns
arrays), so it can stand in for a :class:`~stereosr.models.NAFSSR` in
:func:`stereosr.infer.upscale.upscale_tensors`. Make the file with ``stereosr export --onnx``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..onnx_interface import INPUT_NAMES, OUTPUT_NAMES, OnnxModelInfo

__all__ = ["OnnxModelInfo", "OnnxStereoModel", "onnx_providers"]


def _import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise InputError("onnxruntime is not installed; install it with "
                         "`pip install 'stereosr[onnx]'`") from None
    return ort


def onnx_providers(device: str | torch.device | None = "auto") -> list[str]:
    """onnxruntime execution providers for ``device`` ('auto', 'cpu' or 'cuda')."""
    ort = _import_ort()
    available = ort.get_available_providers()
    dev = "auto" if device is None else str(torch.device(device).type
                                             if not isinstance(device, str) else device)
    if dev in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if dev == "cuda":
        raise InputError("this onnxruntime has no CUDA provider; install onnxruntime-gpu or use "
                         "device='cpu'")
    if dev not in ("auto", "cpu"):
        raise InputError(f"device {dev!r} is not supported by the onnxruntime backend; use "
                         "cpu or cuda")
    return ["CPUExecutionProvider"]


class OnnxStereoModel:
    """An onnxruntime session for a NAFSSR ONNX file, called like the model.

    ``device``: 'auto' (CUDA when onnxruntime has it, else CPU), 'cpu' or 'cuda'.
    ``threads``: intra-op threads for the CPU provider (default: onnxruntime's choice).
    """

    def __init__(self, path: str | os.PathLike[str], device: str | torch.device | None = "auto",
                 *, threads: int | None = None) -> None:
        ort = _import_ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such ONNX file; make one with "
                             "`stereosr export --onnx`")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts,
                                                providers=onnx_providers(device))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{self.path}: not a loadable ONNX model ({first})") from None
        inputs = tuple(i.name for i in self.session.get_inputs())
        outputs = tuple(o.name for o in self.session.get_outputs())
        if inputs != INPUT_NAMES or outputs != OUTPUT_NAMES:
            raise InputError(f"{self.path}: expected inputs {INPUT_NAMES} and outputs "
                             f"{OUTPUT_NAMES}, got {inputs} and {outputs}; export it with "
                             "`stereosr export --onnx`")
        self.info = self._read_info()

    def _read_info(self) -> OnnxModelInfo:
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        info = OnnxModelInfo.from_metadata(meta)
        if info.scale < 1:  # no usable scale recorded: run a tiny input to find it
            info = OnnxModelInfo.from_metadata(meta, scale=self._probe_scale())
        return info

    def _probe_scale(self) -> int:
        x = np.zeros((1, 3, 4, 4), dtype=np.float32)
        out = self.session.run(None, dict.fromkeys(INPUT_NAMES, x))[0]
        return int(out.shape[-1] // 4)

    @property
    def scale(self) -> int:
        """Upscaling factor."""
        return self.info.scale

    @property
    def config(self) -> OnnxModelInfo:
        """Architecture info (``width`` is used by the tiling memory estimate)."""
        return self.info

    def run_numpy(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, h, w) float arrays in [0, 1] -> two (B, 3, s*h, s*w) float32 arrays."""
        for name, a in (("left", left), ("right", right)):
            if a.ndim != 4 or a.shape[1] != 3:
                raise InputError(f"{name} view must be (B, 3, h, w), got {tuple(a.shape)}")
        if left.shape != right.shape:
            raise InputError(f"left and right views differ in size: {tuple(left.shape)} vs "
                             f"{tuple(right.shape)}")
        feeds = dict(zip(INPUT_NAMES, (np.ascontiguousarray(left, dtype=np.float32),
                                       np.ascontiguousarray(right, dtype=np.float32))))
        sr_l, sr_r = self.session.run(list(OUTPUT_NAMES), feeds)
        return sr_l, sr_r

    @overload
    def __call__(self, left: Tensor, right: Tensor) -> tuple[Tensor, Tensor]: ...

    @overload
    def __call__(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def __call__(self, left: Any, right: Any) -> Any:
        """Same contract as ``NAFSSR.__call__``; numpy in -> numpy out, tensors -> tensors."""
        if isinstance(left, Tensor):
            dev, dtype = left.device, left.dtype
            sr_l, sr_r = self.run_numpy(left.detach().float().cpu().numpy(),
                                        right.detach().float().cpu().numpy())
            return (torch.from_numpy(sr_l).to(dev, dtype), torch.from_numpy(sr_r).to(dev, dtype))
        return self.run_numpy(np.asarray(left), np.asarray(right))

    def __repr__(self) -> str:
        return f"OnnxStereoModel({str(self.path)!r}, scale={self.scale})"
