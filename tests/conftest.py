from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).resolve().parent / "data"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    with np.load(DATA / "nafssr_t_x4_io.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def motorcycle() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The TEST pair (never used for training): left, right (500x741x3 uint8), disparity."""
    from skimage import data

    left, right, disp = data.stereo_motorcycle()
    return left, right, disp


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving the files of a temporary folder: (base URL, folder)."""
    from weights_utils import serve_folder

    root = tmp_path / "www"
    root.mkdir()
    with serve_folder(root) as base:
        yield base, root


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """For modules of tiny models: one thread avoids waiting on a busy second core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random x2 NAFSSR (width 8, one block) saved as .safetensors, for command tests."""
    from tiny_models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("w") / "tiny.safetensors", 11)
