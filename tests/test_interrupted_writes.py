"""Ctrl-C or SIGTERM that lands while a temporary file or folder is being made leaves nothing."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import pytest

from stereosr import files


def test_interrupts_held_delivers_after_the_block() -> None:
    reached = []
    with pytest.raises(KeyboardInterrupt), files.interrupts_held():
        signal.raise_signal(signal.SIGINT)
        reached.append("end of block")  # the handler did not run inside the block
    assert reached == ["end of block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _interrupt_after(real):  # type: ignore[no-untyped-def]
    """``real`` (mkstemp/mkdtemp) that is interrupted by Ctrl-C just after it made its entry."""
    def made_then_interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = real(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return out
    return made_then_interrupted


def test_interrupt_after_the_temporary_file_is_made(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files.tempfile, "mkstemp", _interrupt_after(tempfile.mkstemp))
    with pytest.raises(KeyboardInterrupt):
        files.commit_files([(tmp_path / "a.png", b"x" * 10), (tmp_path / "b.png", b"y")])
    assert os.listdir(tmp_path) == []


def test_interrupt_after_the_staging_folder_is_made(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files.tempfile, "mkdtemp", _interrupt_after(tempfile.mkdtemp))
    with pytest.raises(KeyboardInterrupt), files.staged_folder(tmp_path / "out"):
        pass
    assert os.listdir(tmp_path) == []


def test_interrupt_after_the_download_file_is_made(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from stereosr import hub

    monkeypatch.setattr(hub.tempfile, "mkstemp", _interrupt_after(tempfile.mkstemp))
    with pytest.raises(KeyboardInterrupt):
        hub._fetch("http://127.0.0.1:9/w.pth", tmp_path / "w.pth", None, progress=False,
                   timeout=1.0)
    assert os.listdir(tmp_path) == []
