"""The packaged default model on the Motorcycle TEST pair: demo, tiling, ensemble."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from stereosr.cli import main
from stereosr.evaluate import make_lr
from stereosr.imageops import modcrop
from stereosr.infer import upscale_tensors
from stereosr.io import read_image
from stereosr.models.checkpoint import load_model, read_checkpoint
from stereosr.models.registry import DEFAULT_MODEL, MODELS


@pytest.fixture(scope="module")
def model():
    return load_model(DEFAULT_MODEL, device="cpu")


@pytest.fixture(scope="module")
def lr_pair(motorcycle):
    left, right, _ = motorcycle
    hl, hr = modcrop(left, 4), modcrop(right, 4)
    to_t = lambda a: torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32) / 255)[None]
    return to_t(make_lr(hl, 4)), to_t(make_lr(hr, 4)), hl, hr


def test_default_model_is_packaged_with_metadata():
    entry = MODELS[DEFAULT_MODEL]
    assert entry.path.exists(), "the default model's weights must ship with the package"
    _, meta = read_checkpoint(entry.path)
    for key in ("scale", "width", "num_blocks", "tlc_train_size", "training_data", "iterations",
                "hardware", "losses", "scores"):
        assert key in meta, key
    photos = json.loads(meta["training_photos"])
    assert photos and not any("motorcycle" in p.lower() for p in photos)
    assert json.loads(meta["scores"])["motorcycle_x4"]["bicubic"]["psnr"] > 23.8


def test_demo_end_to_end(tmp_path, capsys, motorcycle):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    scores = summary["scores"]
    assert round(scores["bicubic"]["stereo"]["psnr"], 2) == 23.82
    assert round(scores["bicubic"]["stereo"]["ssim"], 4) == 0.7500
    # The figures printed agree with scikit-image on the files written.
    hl, hr = modcrop(motorcycle[0], 4), modcrop(motorcycle[1], 4)
    sl, sr = read_image(out / "sr_left.png"), read_image(out / "sr_right.png")
    ref_psnr = (peak_signal_noise_ratio(hl, sl) + peak_signal_noise_ratio(hr, sr)) / 2
    ref_ssim = (structural_similarity(hl, sl, channel_axis=2, win_size=7, data_range=255)
                + structural_similarity(hr, sr, channel_axis=2, win_size=7, data_range=255)) / 2
    assert abs(scores["model"]["stereo"]["psnr"] - ref_psnr) < 1e-6
    assert abs(scores["model"]["stereo"]["ssim"] - ref_ssim) < 1e-6
    # The shipped model must beat MATLAB bicubic clearly (see the model card for the figure).
    assert summary["gain_db"]["stereo"] > 1.0
    for name in ("comparison.png", "bicubic_left.png", "lr_right.png", "scores.json"):
        assert (out / name).stat().st_size > 0
    assert read_image(out / "lr_left.png").shape == (125, 185, 3)
    assert main(["demo", "-o", str(out)]) == 2  # outputs exist: refused without --overwrite
    # a checkpoint that cannot be read: one line, exit 2, no output folder left behind
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert main(["demo", "-o", str(tmp_path / "new"), "--weights", str(bad)]) == 2
    assert not (tmp_path / "new").exists()


def test_row_tiling_matches_whole_image(model, lr_pair):
    l, r, _, _ = lr_pair
    full_l, full_r = upscale_tensors(model, l, r, auto_tile=False)
    # The default overlap is the model's TLC window height (45 rows): bands of 48 or 64 rows
    # stay within a quarter of a grey level of the whole image (24 rows gave a whole level).
    for tile in (48, 64):
        t_l, t_r = upscale_tensors(model, l, r, tile=tile)
        assert (t_l - full_l).abs().max().item() <= 0.25 / 255
        assert (t_r - full_r).abs().max().item() <= 0.25 / 255
    # Attention chunking over rows is exact.
    c_l, _ = upscale_tensors(model, l, r, auto_tile=False, attention_chunk=7)
    assert torch.allclose(c_l, full_l, atol=1e-5)


def test_self_ensemble_helps_or_matches(model, lr_pair):
    l, r, hl, hr = lr_pair
    def score(pair):
        a = [np.clip(np.round(t[0].permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
             for t in pair]
        return (peak_signal_noise_ratio(hl, a[0]) + peak_signal_noise_ratio(hr, a[1])) / 2
    plain = score(upscale_tensors(model, l, r, auto_tile=False))
    ens = score(upscale_tensors(model, l, r, auto_tile=False, self_ensemble=True))
    assert ens > plain - 0.05
