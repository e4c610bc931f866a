"""scripts/score_checkpoint_means.py: scores of single checkpoints and of equal means."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from module_utils import load_repo_module
from PIL import Image

from stereosr.data.pairs import find_pairs
from stereosr.evaluate import evaluate_model, load_eval_pair
from stereosr.models.checkpoint import load_model, save_model
from stereosr.models.nafssr import NAFSSR, NAFSSRConfig


def test_scores_match_an_independent_evaluation(tmp_path: Path, monkeypatch, capsys) -> None:
    rng = np.random.default_rng(0)
    val = tmp_path / "val"
    val.mkdir()
    for name in ("0001", "real-cam"):
        for side in "LR":
            Image.fromarray(rng.integers(0, 255, (32, 160, 3), dtype=np.uint8)).save(
                val / f"{name}_{side}.png")
    torch.manual_seed(1)
    nets = [NAFSSR(NAFSSRConfig(width=4, num_blocks=1)) for _ in range(2)]
    files = [save_model(n, tmp_path / f"w{k}.safetensors", {"trained_iterations": k + 1})
             for k, n in enumerate(nets)]
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    monkeypatch.syspath_prepend(str(scripts))
    tool = load_repo_module("scripts/score_checkpoint_means.py")
    monkeypatch.setattr(sys, "argv", ["score_checkpoint_means.py", "--val", str(val), "--mean",
                                      str(files[0]), "--mean", f"{files[0]}+{files[1]}"])
    assert tool.main() == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [len(r["mean_of"]) for r in rows] == [1, 2]

    mean = NAFSSR(NAFSSRConfig(width=4, num_blocks=1)).eval()
    mean.load_state_dict({k: (v + nets[1].state_dict()[k]) / 2
                          for k, v in nets[0].state_dict().items()})
    pairs = find_pairs(val)
    for row, model in zip(rows, (load_model(files[0], device="cpu"), mean)):
        for kind, want in (("real", True), ("synthetic", False)):
            chosen = [load_eval_pair(f, 4) for f in pairs if f.name.startswith("real-") == want]
            ref = evaluate_model(model, chosen, bicubic=False).mean()["model"]["stereo"]["psnr"]
            assert abs(row[f"{kind}_psnr"] - ref) < 1e-4, (kind, row)
            assert row[f"{kind}_pairs"] == 1
