"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ImageReadError",
    "ImageTooLargeError",
    "InputError",
    "OutputError",
    "OutputExistsError",
    "StereoSRError",
    "StereoSRWarning",
]


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


class OutputError(InputError):
    """An output that cannot be written: the folder is missing, full, read-only, ..."""


class OutputExistsError(OutputError):
    """An output file exists (or appeared while it was being written) and ``overwrite`` is
    false; the existing file was kept."""


class StereoSRWarning(UserWarning):
    """Something a user should know about that did not stop the work (e.g. a skipped pair);
    the CLI prints it as one line."""
