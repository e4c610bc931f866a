"""The ONNX interface of an exported NAFSSR: tensor names and metadata keys.

One definition shared by the writer (:mod:`stereosr.export`) and the onnxruntime reader
(:mod:`stereosr.infer.onnx_backend`), so the two cannot drift apart.

Inputs ``left``, ``right``: (B, 3, h, w) float32 RGB in [0, 1]; outputs ``sr_left``,
``sr_right``: (B, 3, s*h, s*w) float32. Metadata (ONNX ``metadata_props``, all strings):
``stereosr.scale``, ``stereosr.width``, ``stereosr.num_blocks``, ``stereosr.tlc_train_size``
(``"HxW"`` or ``"off"``) and two human-readable lines describing the inputs and outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "INPUT_NAMES",
    "KEY_INPUTS",
    "KEY_NUM_BLOCKS",
    "KEY_OUTPUTS",
    "KEY_SCALE",
    "KEY_TLC_TRAIN_SIZE",
    "KEY_WIDTH",
    "OUTPUT_NAMES",
    "OnnxModelInfo",
    "metadata_props",
]

INPUT_NAMES: tuple[str, str] = ("left", "right")
OUTPUT_NAMES: tuple[str, str] = ("sr_left", "sr_right")

KEY_SCALE = "stereosr.scale"
KEY_WIDTH = "stereosr.width"
KEY_NUM_BLOCKS = "stereosr.num_blocks"
KEY_TLC_TRAIN_SIZE = "stereosr.tlc_train_size"
KEY_INPUTS = "stereosr.inputs"
KEY_OUTPUTS = "stereosr.outputs"


@dataclass(frozen=True)
class OnnxModelInfo:
    """Architecture recorded in the ONNX metadata by the exporter (``None`` when absent)."""

    scale: int
    width: int | None = None
    num_blocks: int | None = None
    tlc_train_size: tuple[int, int] | None = None

    @classmethod
    def from_metadata(cls, meta: dict[str, str], scale: int | None = None) -> OnnxModelInfo:
        """Read the metadata written by :func:`metadata_props`; ``scale`` is used when the
        file records no positive scale (``0`` when neither gives one). Malformed entries read
        as ``None``."""
        tlc = meta.get(KEY_TLC_TRAIN_SIZE, "")
        parts = tlc.split("x") if "x" in tlc else []
        size = (int(parts[0]), int(parts[1])) if len(parts) == 2 and all(
            p.isdigit() for p in parts) else None
        recorded = _int(meta, KEY_SCALE)
        return cls(scale=int(recorded if recorded and recorded > 0 else (scale or 0)),
                   width=_int(meta, KEY_WIDTH), num_blocks=_int(meta, KEY_NUM_BLOCKS),
                   tlc_train_size=size)


def _int(meta: dict[str, str], key: str) -> int | None:
    try:
        return int(meta[key])
    except (KeyError, ValueError):
        return None


def metadata_props(scale: int, width: int, num_blocks: int,
                   tlc_train_size: tuple[int, int] | None) -> dict[str, str]:
    """The metadata the exporter stores (read back by :meth:`OnnxModelInfo.from_metadata`)."""
    return {
        KEY_SCALE: str(scale),
        KEY_WIDTH: str(width),
        KEY_NUM_BLOCKS: str(num_blocks),
        KEY_TLC_TRAIN_SIZE: (f"{tlc_train_size[0]}x{tlc_train_size[1]}" if tlc_train_size
                             else "off"),
        KEY_INPUTS: f"{', '.join(INPUT_NAMES)}: (B, 3, h, w) float32 RGB in [0, 1]",
        KEY_OUTPUTS: f"{', '.join(OUTPUT_NAMES)}: (B, 3, s*h, s*w) float32",
    }
