"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations

__all__ = ["CheckpointError", "InputError", "StereoSRError"]


class StereoSRError(Exception):
    """Base class of user-facing errors: the message says what is wrong and what to do."""

    exit_code = 2


class InputError(StereoSRError, ValueError):
    """A bad image, pair, folder or argument."""


class CheckpointError(StereoSRError, ValueError):
    """A checkpoint that cannot be loaded safely or does not fit the architecture."""
