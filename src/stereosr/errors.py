"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations

__all__ = ["CheckpointError", "ImageReadError", "ImageTooLargeError", "InputError", "StereoSRError"]


class StereoSRError(Exception):
    """Base class of user-facing errors: the message says what is wrong and what to do."""

    exit_code = 2


class InputError(StereoSRError, ValueError):
    """A bad image, pair, folder or argument."""


class ImageReadError(InputError):
    """An image file that cannot be read: missing, not an image, corrupt, truncated, empty,
    of an unsupported kind, or over the pixel limit. Folder runs can skip such files."""


class ImageTooLargeError(ImageReadError):
    """An image whose header declares more pixels than the reader's ``max_pixels`` limit."""


class CheckpointError(StereoSRError, ValueError):
    """A checkpoint that cannot be loaded safely or does not fit the architecture."""
