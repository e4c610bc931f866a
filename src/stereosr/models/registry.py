"""Named models: weights shipped inside the package (and user-registered files)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "MODELS", "RegisteredModel", "list_models", "resolve_name"]

_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class RegisteredModel:
    """A model that can be loaded by name."""

    name: str
    filename: str
    description: str

    @property
    def path(self) -> Path:
        return _WEIGHTS_DIR / self.filename


MODELS: dict[str, RegisteredModel] = {
    m.name: m
    for m in [
        RegisteredModel(
            "stereosr-x4", "stereosr-x4.safetensors",
            "compact NAFSSR x4 (width 32, 8 blocks) trained by the stereosr project on synthetic "
            "stereo pairs built from photographs (model card: stereosr/weights/MODEL_CARD.md)"),
    ]
}

DEFAULT_MODEL = "stereosr-x4"


def list_models() -> list[RegisteredModel]:
    """Registered models whose weights are present."""
    return [m for m in MODELS.values() if m.path.exists()]


def resolve_name(name: str) -> Path | None:
    """Weights file of a registered model name ('default' means the default model), or None."""
    key = DEFAULT_MODEL if name.lower() == "default" else name.lower()
    entry = MODELS.get(key)
    if entry is None or not entry.path.exists():
        return None
    return entry.path
