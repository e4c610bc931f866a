"""The evaluation library: bicubic baseline pinned on the motorcycle pair, model scoring,
folder matching, reports, and bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from stereosr.data.pairs import find_pairs
from stereosr.degrade.bicubic import imresize
from stereosr.errors import InputError
from stereosr.evaluate import (
    EvalPair,
    bicubic_upscale,
    evaluate_folders,
    evaluate_model,
    evaluate_pairs,
    load_eval_pair,
    make_lr,
)
from stereosr.imageops import modcrop
from stereosr.metrics import LEFT, STEREO, get_protocol
from stereosr.models import NAFSSR, NAFSSRConfig


@pytest.fixture(scope="module")
def tiny_x4() -> NAFSSR:
    torch.manual_seed(0)
    model = NAFSSR(NAFSSRConfig(width=8, num_blocks=2, scale=4))
    for name, p in model.named_parameters():
        torch.nn.init.normal_(p, std=0.05 if name.endswith(("beta", "gamma")) else 0.1)
    return model.eval()


def _sk_pair_scores(sr: tuple[np.ndarray, np.ndarray], hr: tuple[np.ndarray, np.ndarray]
                    ) -> tuple[float, float]:
    p = [peak_signal_noise_ratio(h, s, data_range=255) for s, h in zip(sr, hr)]
    s = [structural_similarity(a.astype(float), b.astype(float), channel_axis=2, win_size=7,
                               data_range=255) for a, b in zip(sr, hr)]
    return (p[0] + p[1]) / 2, (s[0] + s[1]) / 2


def _q(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def test_bicubic_motorcycle_x4_pinned(motorcycle: tuple[np.ndarray, ...]) -> None:
    """741x500 is cropped to 740x500 (modcrop), LR = MATLAB imresize of the 8-bit HR, the
    baseline = MATLAB bicubic x4 of the LR in float, rounded to 8 bits once: 23.82 / 0.7500."""
    left, right, _ = motorcycle
    hl, hr = modcrop(left, 4), modcrop(right, 4)
    assert hl.shape == (500, 740, 3)
    pair = EvalPair("motorcycle", hl, hr, make_lr(hl, 4), make_lr(hr, 4), 4)
    assert pair.lr_left.shape == (125, 185, 3) and pair.lr_left.dtype == np.uint8
    res = evaluate_model(None, [pair], [STEREO, LEFT])
    mean = res.mean()["bicubic"]
    assert round(mean["stereo"]["psnr"], 2) == 23.82
    assert round(mean["stereo"]["ssim"], 4) == 0.7500
    assert mean["stereo"]["psnr"] == pytest.approx(23.8220, abs=5e-4)
    assert mean["left"]["psnr"] == pytest.approx(23.5891, abs=5e-4)
    # independent check of the same numbers with scikit-image
    up = (_q(bicubic_upscale(pair.lr_left, 4)), _q(bicubic_upscale(pair.lr_right, 4)))
    p, s = _sk_pair_scores(up, (hl, hr))
    assert mean["stereo"]["psnr"] == pytest.approx(p, abs=1e-6)
    assert mean["stereo"]["ssim"] == pytest.approx(s, abs=1e-6)
    # MATLAB's 8-bit imresize rounds after each pass: a slightly lower SSIM (0.7498)
    u8 = (imresize(pair.lr_left, 4.0), imresize(pair.lr_right, 4.0))
    p8, s8 = _sk_pair_scores(u8, (hl, hr))
    assert round(p8, 2) == 23.82 and round(s8, 4) == 0.7498


def _write_pair(folder: Path, name: str, left: np.ndarray, right: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(left).save(folder / f"{name}_L.png")
    Image.fromarray(right).save(folder / f"{name}_R.png")


def _crops(motorcycle: tuple[np.ndarray, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    left, right, _ = motorcycle
    return {"a": (left[100:197, 150:402], right[100:197, 150:402]),  # 252x97: modcrop to 252x96
            "b": (left[250:346, 300:504], right[250:346, 300:504])}


def test_evaluate_model_with_model_and_bicubic(tmp_path: Path, tiny_x4: NAFSSR,
                                               motorcycle: tuple[np.ndarray, ...]) -> None:
    from stereosr.infer import upscale

    for name, (l, r) in _crops(motorcycle).items():
        _write_pair(tmp_path / "hr", name, l, r)
    files = find_pairs(tmp_path / "hr")
    pairs = [load_eval_pair(f, 4) for f in files]
    assert pairs[0].hr_left.shape == (96, 252, 3) and not pairs[0].lr_from_disk
    seen: dict[str, list[str]] = {}
    res = evaluate_model(tiny_x4, pairs, [STEREO, get_protocol("basicsr")],
                         on_output=lambda p, o: seen.setdefault(p.name, list(o)))
    assert res.methods == ("model", "bicubic") and seen == {"a": ["model", "bicubic"],
                                                           "b": ["model", "bicubic"]}
    for pair, ps in zip(pairs, res.pairs):
        sr = upscale(pair.lr_left, pair.lr_right, tiny_x4)
        p, s = _sk_pair_scores(sr, (pair.hr_left, pair.hr_right))
        assert ps.scores["model"]["stereo"]["psnr"] == pytest.approx(p, abs=1e-6)
        assert ps.scores["model"]["stereo"]["ssim"] == pytest.approx(s, abs=1e-6)
        bic = tuple(_q(bicubic_upscale(v, 4)) for v in (pair.lr_left, pair.lr_right))
        p, s = _sk_pair_scores(bic, (pair.hr_left, pair.hr_right))  # type: ignore[arg-type]
        assert ps.scores["bicubic"]["stereo"]["psnr"] == pytest.approx(p, abs=1e-6)
    mean = res.mean()
    for m in res.methods:
        for k in ("psnr", "ssim"):
            assert mean[m]["basicsr-y-crop4"][k] == pytest.approx(
                np.mean([ps.scores[m]["basicsr-y-crop4"][k] for ps in res.pairs]), abs=1e-12)
    with pytest.raises(InputError, match="x4 but the data are prepared for x2"):
        p2 = EvalPair("c", pairs[0].hr_left, pairs[0].hr_right, pairs[0].lr_left,
                      pairs[0].lr_right, 2)
        evaluate_model(tiny_x4, [p2])


def test_lr_from_disk_and_wrong_scale(tmp_path: Path, motorcycle: tuple[np.ndarray, ...]) -> None:
    left, right, _ = motorcycle
    hl, hr = left[:99, :203], right[:99, :203]  # not multiples of 4: modcropped to 96x200
    d = tmp_path / "set" / "000001"
    d.mkdir(parents=True)
    for n, img in (("hr0", hl), ("hr1", hr), ("lr0", make_lr(modcrop(hl, 4), 4)),
                   ("lr1", make_lr(modcrop(hr, 4), 4))):
        Image.fromarray(img).save(d / f"{n}.png")
    (f,) = find_pairs(tmp_path / "set")
    pair = load_eval_pair(f, 4)
    assert pair.lr_from_disk and pair.hr_left.shape == (96, 200, 3)
    np.testing.assert_array_equal(pair.lr_left, make_lr(modcrop(hl, 4), 4))
    assert evaluate_model(None, [pair], [STEREO]).meta["lr"] == "read from disk"
    with pytest.raises(InputError, match=r"is 50x24, about x4 smaller than HR 203x99, not x2; "
                                          r"use a x4 model"):
        load_eval_pair(f, 2)


def test_lr_made_from_uncropped_hr_names_the_expected_size(tmp_path: Path,
                                                          motorcycle: tuple[np.ndarray, ...]
                                                          ) -> None:
    from stereosr.degrade.bicubic import imresize

    left, right, _ = motorcycle
    hl, hr = left[:99, :203], right[:99, :203]
    d = tmp_path / "set" / "000001"
    d.mkdir(parents=True)
    # MATLAB imresize(hr, 1/4) of the uncropped 203x99 view is ceil-sized: 51x25, not 50x24.
    for n, img in (("hr0", hl), ("hr1", hr), ("lr0", imresize(hl, 0.25)),
                   ("lr1", imresize(hr, 0.25))):
        Image.fromarray(img).save(d / f"{n}.png")
    (f,) = find_pairs(tmp_path / "set")
    with pytest.raises(InputError) as info:
        load_eval_pair(f, 4)
    msg = str(info.value)
    assert "is 51x25 but HR 203x99 at x4 needs LR 50x24" in msg and "200x96" in msg
    assert "--scale" not in msg and "\n" not in msg


def test_evaluate_pairs_reports(motorcycle: tuple[np.ndarray, ...]) -> None:
    left, right, _ = motorcycle
    hl, hr = left[:80, :150], right[:80, :150]
    noisy = [np.clip(v + np.random.default_rng(i).normal(0, 8, v.shape), 0, 255).astype(np.uint8)
             for i, v in enumerate((hl, hr))]
    t = [torch.from_numpy(v).permute(2, 0, 1).float() / 255 for v in noisy]
    res = evaluate_pairs([("x", noisy[0], noisy[1], hl, hr), ("y", t[0], t[1], hl, hr),
                          ("same", hl, hr, hl, hr)], [STEREO, LEFT])
    assert res.pairs[0].scores == res.pairs[1].scores
    assert res.pairs[2].scores["sr"]["stereo"]["psnr"] == float("inf")
    d = json.loads(res.to_json())
    assert d["num_pairs"] == 3 and d["mean"]["sr"]["stereo"]["psnr"] == "inf"
    assert d["mean"]["sr"]["stereo"]["ssim"] == pytest.approx(
        (2 * res.pairs[0].scores["sr"]["stereo"]["ssim"] + 1) / 3)
    assert d["protocols"]["left"]["crop_left"] == 64
    rows = list(csv.DictReader(io.StringIO(res.to_csv())))
    assert len(rows) == 4 * 2 and rows[0]["pair"] == "x" and rows[-1]["pair"] == "mean"
    assert float(rows[0]["psnr"]) == pytest.approx(res.pairs[0].scores["sr"]["stereo"]["psnr"],
                                                   abs=1e-6)
    table = res.format_table(per_pair=True)
    assert "pair same" in table and "mean over 3 pairs" in table


def test_evaluate_pairs_bad_input(motorcycle: tuple[np.ndarray, ...]) -> None:
    left, right, _ = motorcycle
    hl, hr = left[:80, :150], right[:80, :150]
    nan = hl.astype(np.float32) / 255
    nan[5, 5, 0] = np.nan
    with pytest.raises(InputError, match=r"^pair p: .*NaN"):
        evaluate_pairs([("p", nan, hr, hl, hr)])
    with pytest.raises(InputError, match=r"^pair q: SR and HR right views differ in size"):
        evaluate_pairs([("q", hl, hr[:, :-4], hl, hr)])
    with pytest.raises(InputError, match="no pairs"):
        evaluate_pairs([])


def test_evaluate_folders(tmp_path: Path, motorcycle: tuple[np.ndarray, ...]) -> None:
    crops = _crops(motorcycle)
    for name, (l, r) in crops.items():
        _write_pair(tmp_path / "hr", name, l, r)
        sr = [np.clip(v.astype(int) + 3, 0, 255).astype(np.uint8) for v in (l, r)]
        _write_pair(tmp_path / "sr", name, *sr)
    _write_pair(tmp_path / "sr", "extra", *crops["a"])  # extra SR pairs are ignored
    res = evaluate_folders(tmp_path / "sr", tmp_path / "hr", [STEREO])
    assert [p.name for p in res.pairs] == ["a", "b"]
    l, r = crops["a"]
    p, s = _sk_pair_scores(tuple(np.clip(v.astype(int) + 3, 0, 255).astype(np.uint8)
                                 for v in (l, r)), (l, r))  # type: ignore[arg-type]
    assert res.pairs[0].scores["sr"]["stereo"]["psnr"] == pytest.approx(p, abs=1e-6)
    assert res.pairs[0].scores["sr"]["stereo"]["ssim"] == pytest.approx(s, abs=1e-6)
    (tmp_path / "sr" / "b_L.png").unlink()
    (tmp_path / "sr" / "b_R.png").unlink()
    with pytest.raises(InputError, match="no SR result for HR pair 'b'"):
        evaluate_folders(tmp_path / "sr", tmp_path / "hr", [STEREO])


def test_gain_is_positive_where_the_model_is_better() -> None:
    """The table's gain is model - bicubic for PSNR/SSIM and bicubic - model for LPIPS and
    warp errors (lower is better), so a positive gain always means an improvement."""
    from stereosr.evaluate import EvaluationResult, PairScores
    from stereosr.metrics import STEREO

    scores = {"model": {"stereo": {"psnr": 30.0, "ssim": 0.9, "lpips": 0.10, "consistency": 1.0}},
              "bicubic": {"stereo": {"psnr": 28.0, "ssim": 0.8, "lpips": 0.30,
                                     "consistency": 3.0}}}
    res = EvaluationResult(("model", "bicubic"), (STEREO,), [PairScores("p", scores)])
    rows = {line.split()[1]: line.split()[-1] for line in res.format_table().splitlines()
            if line.startswith("stereo")}
    assert rows == {"PSNR": "+2.00", "SSIM": "+0.1000", "LPIPS": "+0.2000", "warp": "+2.000"}
