"""scripts/fetch_test_pairs.py: refuses a used folder and leaves nothing behind on failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from module_utils import load_repo_module


def test_refuses_a_folder_that_holds_files(tmp_path: Path, monkeypatch, capsys) -> None:
    mod = load_repo_module("scripts/fetch_test_pairs.py")
    out = tmp_path / "pairs"
    out.mkdir()
    (out / "mine.png").write_bytes(b"user data")
    monkeypatch.setattr(sys, "argv", ["fetch_test_pairs.py", str(out)])
    assert mod.main() == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.png"]
    monkeypatch.setattr(sys, "argv", ["fetch_test_pairs.py", str(out / "mine.png")])
    assert mod.main() == 2
    assert "is a file" in capsys.readouterr().err
    assert (out / "mine.png").read_bytes() == b"user data"


def test_a_failed_download_leaves_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    mod = load_repo_module("scripts/fetch_test_pairs.py")

    def failing_fetch(out: Path, work: Path) -> dict:
        (out / "motorcycle_L.png").write_bytes(b"partial")  # some pairs already written
        raise subprocess.CalledProcessError(100, ["apt-get", "download", "opencv-doc"])

    monkeypatch.setattr(mod, "fetch", failing_fetch)
    out = tmp_path / "pairs"
    monkeypatch.setattr(sys, "argv", ["fetch_test_pairs.py", str(out)])
    assert mod.main() == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not fetch" in err[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("existing", [False, True])
def test_pairs_land_in_the_folder_with_their_sources(tmp_path: Path, monkeypatch,
                                                     existing: bool) -> None:
    mod = load_repo_module("scripts/fetch_test_pairs.py")

    def fake_fetch(out: Path, work: Path) -> dict:
        for view in "LR":
            (out / f"rocks2_{view}.png").write_bytes(view.encode())
        return {"rocks2": {"what": "Middlebury 2006 Rocks2"}}

    monkeypatch.setattr(mod, "fetch", fake_fetch)
    out = tmp_path / "pairs"
    if existing:
        out.mkdir()  # an empty folder is fine
    monkeypatch.setattr(sys, "argv", ["fetch_test_pairs.py", str(out)])
    assert mod.main() == 0
    assert sorted(p.name for p in out.iterdir()) == ["SOURCES.json", "rocks2_L.png",
                                                     "rocks2_R.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs"]
