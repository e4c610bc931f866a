"""Sharded inference under torchrun: 2 gloo processes on CPU split the pairs; rank 0 reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stereosr.infer import upscale
from stereosr.io import read_image
from stereosr.models import NAFSSR, NAFSSRConfig
from stereosr.models.checkpoint import load_model, save_model

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")


@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun not installed")
def test_upscale_folder_split_over_two_ranks(tmp_path):
    torch.manual_seed(0)
    model = NAFSSR(NAFSSRConfig(width=8, num_blocks=1, scale=2))
    weights = save_model(model, tmp_path / "tiny.safetensors")
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        for side in "LR":
            arr = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
            Image.fromarray(arr).save(src / f"{i + 1:04d}_{side}.png")
    # A sixth pair whose right view is cut short (its header is fine): rank 1 skips it.
    for side in "LR":
        Image.fromarray(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)).save(
            src / f"0006_{side}.png")
    data = (src / "0006_R.png").read_bytes()
    (src / "0006_R.png").write_bytes(data[:len(data) // 2])
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(  # noqa: PLW1510 (rc checked below)
        [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "stereosr", "upscale",
         "--input-dir", str(src), "-o", str(out), "--weights", str(weights), "--device", "cpu",
         "--json", "--skip-bad"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1  # only rank 0 reports
    summary = json.loads(lines[0])
    assert summary["pairs"] == 5 and len(set(summary["outputs"])) == 10
    assert [s["pair"] for s in summary["skipped"]] == ["0006"]
    ref_model = load_model(weights, device="cpu")
    for i in range(5):
        name = f"{i + 1:04d}"
        ref_l, ref_r = upscale(read_image(src / f"{name}_L.png"), read_image(src / f"{name}_R.png"),
                               ref_model)
        assert np.array_equal(read_image(out / f"{name}_L.png"), ref_l)
        assert np.array_equal(read_image(out / f"{name}_R.png"), ref_r)


@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun not installed")
def test_evaluate_data_split_over_two_ranks(tmp_path):
    from stereosr.cli import main

    torch.manual_seed(1)
    model = NAFSSR(NAFSSRConfig(width=8, num_blocks=1, scale=2))
    weights = save_model(model, tmp_path / "tiny.safetensors")
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (16, 96, 3), dtype=np.uint8)
    for i in range(3):
        Image.fromarray(np.roll(base, i, axis=1)).save(data / f"{i + 1:04d}_L.png")
        Image.fromarray(np.roll(base, i + 2, axis=1)).save(data / f"{i + 1:04d}_R.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(  # noqa: PLW1510 (rc checked below)
        [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "stereosr", "evaluate",
         "--data", str(data), "--weights", str(weights), "--device", "cpu",
         "--json", str(tmp_path / "dist.json")], capture_output=True, text=True, env=env,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert main(["evaluate", "--data", str(data), "--weights", str(weights), "--device", "cpu",
                 "--json", str(tmp_path / "single.json")]) == 0
    a = json.loads((tmp_path / "dist.json").read_text())
    b = json.loads((tmp_path / "single.json").read_text())
    assert a["pairs"] == b["pairs"] and len(a["pairs"]) == 3
    assert a["mean"] == b["mean"]
