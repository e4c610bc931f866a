"""Test helpers for weight files: an HTTP server on 127.0.0.1 and torchvision-layout weights."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from stereosr.backbones import FeatureStack


@contextmanager
def serve_folder(root: Path) -> Iterator[str]:
    """Serve the files of ``root`` over HTTP on 127.0.0.1; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def random_backbone_state(arch: str, seed: int) -> dict[str, torch.Tensor]:
    """torchvision-layout random weights (He-scaled normal), made without a slow module init."""
    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in FeatureStack(arch).features.state_dict().items()}
    state = {}
    for k, shape in shapes.items():
        if k.endswith("weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            state[f"features.{k}"] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            state[f"features.{k}"] = torch.randn(shape, generator=g) * 0.01
    state["classifier.1.weight"] = torch.zeros(4, 4)  # torchvision files carry a classifier too
    return state
