"""The training loop: schedule, EMA, accumulation, non-finite losses, validation, export."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from train_utils import make_pairs, tiny_config, write_config

from stereosr.cli import main
from stereosr.train.config import ScheduleSection, config_from_dict
from stereosr.train.loop import train
from stereosr.train.optim import ModelEMA, ema_decay_at, lr_at
from stereosr.train.state import list_checkpoints, load_training_state


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pairs(tmp_path_factory.mktemp("loop") / "pairs", n=3, hw=(48, 144))


def test_cosine_schedule_matches_torch() -> None:
    base, eta, total = 3e-3, 1e-7, 50
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=eta)
    cfg = ScheduleSection(total_iters=total, eta_min=eta)
    for it in range(total):
        assert math.isclose(lr_at(it, base, cfg), sched.get_last_lr()[0], rel_tol=1e-9)
        opt.step()
        sched.step()


def test_warmup_then_cosine() -> None:
    cfg = ScheduleSection(total_iters=110, eta_min=0.0, warmup_iters=10)
    np.testing.assert_allclose([lr_at(i, 1.0, cfg) for i in range(3)], [0.1, 0.2, 0.3], rtol=1e-12)
    assert lr_at(9, 1.0, cfg) == 1.0 and lr_at(10, 1.0, cfg) == 1.0
    assert math.isclose(lr_at(60, 1.0, cfg), 0.5, rel_tol=1e-12)  # half way down the cosine
    assert lr_at(10_000, 1.0, cfg) == 0.0  # clamped past the end
    const = ScheduleSection(total_iters=10, kind="constant")
    assert {lr_at(i, 0.5, const) for i in range(10)} == {0.5}


def test_ema_update_formula() -> None:
    """First update copies; the n-th later one uses d = min(decay, (1 + n) / (10 + n))."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    ema = ModelEMA(net, decay=0.9)
    expect: dict[str, torch.Tensor] = {}
    for n in range(40):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        ema.update(net)
        d = min(0.9, (1.0 + n) / (10.0 + n))
        for k, v in net.state_dict().items():
            expect[k] = v.clone() if n == 0 else d * expect[k] + (1 - d) * v
        assert ema.num_updates == n + 1
    assert ema_decay_at(0.9, 1) == 2 / 11 and ema_decay_at(0.9, 1000) == 0.9
    for k, v in expect.items():
        torch.testing.assert_close(ema.state_dict()[k], v, rtol=0, atol=1e-6)


def _weights(raw: dict[str, Any]) -> dict[str, torch.Tensor]:
    return train(config_from_dict(raw)).weights


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.slow
def test_accumulation_and_channels_last_match_plain_batches(pairs: Path, tmp_path: Path) -> None:
    common = {"optim": {"lr": 0.05, "eps": 0.1}, "data": {"batch_size": 4},
              "schedule": {"total_iters": 3}}
    plain = _weights(tiny_config(pairs, tmp_path / "a", train={"grad_clip": None}, **common))
    accum = _weights(tiny_config(pairs, tmp_path / "b",
                                 train={"grad_clip": None, "accumulate": 2}, **common))
    chlast = _weights(tiny_config(pairs, tmp_path / "c",
                                  train={"grad_clip": None, "channels_last": True}, **common))
    torch.manual_seed(1)
    from stereosr.train.loop import build_model

    init = build_model(config_from_dict(tiny_config(pairs, tmp_path / "d"))).state_dict()
    assert _max_diff(plain, init) > 1e-2
    assert _max_diff(plain, accum) < 2e-6
    assert _max_diff(plain, chlast) < 2e-6


@pytest.mark.slow
def test_training_learns_validates_and_exports(pairs: Path, tmp_path: Path) -> None:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from stereosr.data.datasets import StereoSRDataset
    from stereosr.models.checkpoint import load_model

    run = tmp_path / "run"
    raw = tiny_config(pairs, run, schedule={"total_iters": 30}, optim={"lr": 3e-3},
                      train={"ema_decay": 0.8, "log_every": 5, "checkpoint_every": 10},
                      val={"root": str(pairs), "every": 10})
    result = train(config_from_dict(raw))
    logs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["mse"] for r in logs if r["kind"] == "train"]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]
    vals = [r for r in logs if r["kind"] == "val"]
    assert [r["iter"] for r in vals] == [10, 20, 30]
    assert (run / "train.csv").read_text().splitlines()[0].split(",")[:3] == [
        "iter", "lr", "it_s"]

    # The final export is the EMA of the last checkpoint, in official key names.
    final = load_file(str(run / "model_final.safetensors"))
    state = load_training_state(list_checkpoints(run)[-1][1])
    assert state.iteration == 30
    assert final.keys() == state.params_ema.keys() == state.params.keys()
    for k, v in final.items():
        assert torch.equal(v, state.params_ema[k])
    assert "body.0.module.fusion.l_proj1.weight" in final

    # Independent check of the logged validation score: scikit-image PSNR/SSIM of the
    # exported model's outputs, (left + right) / 2, averaged over pairs.
    model = load_model(run / "model_final.safetensors")  # TLC from the training patch size
    ds = StereoSRDataset(pairs, 2)
    ps, ss = [], []
    for i in range(len(ds)):
        item = ds[i]
        to_t = lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            out = model(to_t(item["lr_left"]), to_t(item["lr_right"]))
        for sr, hr in zip(out, (item["hr_left"], item["hr_right"])):
            sr8 = (sr[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            hr8 = np.round(hr * 255).astype(np.uint8)
            ps.append(peak_signal_noise_ratio(hr8, sr8, data_range=255))
            ss.append(structural_similarity(hr8, sr8, win_size=7, channel_axis=2,
                                            data_range=255))
    assert math.isclose(vals[-1]["psnr"], float(np.mean(ps)), abs_tol=1e-3)
    assert math.isclose(vals[-1]["ssim"], float(np.mean(ss)), abs_tol=1e-4)
    best = max(vals, key=lambda r: r["psnr"])
    assert result.best_psnr == best["psnr"]
    assert (run / "model_best.safetensors").is_file()


@pytest.mark.slow
def test_nonfinite_losses_stop_with_a_checkpoint(pairs: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    # A huge learning rate: after the first step the outputs overflow float32 (inf loss).
    raw = tiny_config(pairs, run, optim={"lr": 1e30}, schedule={"total_iters": 50,
                                                                "kind": "constant"},
                      train={"max_nonfinite": 3, "grad_clip": None, "checkpoint_every": 100})
    code = main(["train", str(write_config(tmp_path / "c.yaml", raw))])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert "not finite for 3 iterations in a row (at iteration 4)" in err[-1]
    st = load_training_state(list_checkpoints(run)[-1][1])
    assert st.iteration == 4
    assert st.meta["counters"]["skipped_nonfinite"] == 3
    assert not (run / "model_final.safetensors").exists()


@pytest.mark.slow
def test_bf16_autocast_on_cpu(pairs: Path, tmp_path: Path) -> None:
    common = {"schedule": {"total_iters": 2}, "optim": {"lr": 1e-3}}
    ref = train(config_from_dict(tiny_config(pairs, tmp_path / "a", **common)))
    low = train(config_from_dict(tiny_config(pairs, tmp_path / "b", train={"amp": "bf16"},
                                             **common)))
    # Same data and init; bf16 forward changes the loss by well under 5 %.
    assert math.isclose(low.last_losses["mse"], ref.last_losses["mse"], rel_tol=0.05)
    assert low.last_losses["mse"] != ref.last_losses["mse"]


@pytest.mark.slow
def test_compile_and_fused_adamw_match_plain(pairs: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """train.compile traces forward and loss together (here with the eager backend, which
    runs the traced graph without code generation) and optim.fused takes the fused AdamW;
    both train to the same weights as the plain loop."""
    from stereosr.train import loop

    traced: list[Any] = []
    modes: list[Any] = []
    real = torch.compile

    def eager_compile(fn: Any, **kw: Any) -> Any:
        traced.append(fn)
        modes.append(kw.pop("mode", None))
        return real(fn, backend="eager", **kw)

    common = {"optim": {"lr": 0.05, "eps": 0.1}, "schedule": {"total_iters": 3}}
    plain = _weights(tiny_config(pairs, tmp_path / "a", **common))
    monkeypatch.setattr(loop.torch, "compile", eager_compile)
    compiled = _weights(tiny_config(pairs, tmp_path / "b", train={"compile": True}, **common))
    assert len(traced) == 1 and traced[0].__name__ == "forward_loss"
    graphs = _weights(tiny_config(pairs, tmp_path / "g", train={
        "compile": True, "compile_mode": "reduce-overhead"}, **common))
    assert modes == [None, "reduce-overhead"]  # the CUDA-graph mode reaches torch.compile
    monkeypatch.setattr(loop.torch, "compile", real)
    fused = _weights(tiny_config(pairs, tmp_path / "c", **{**common, "optim": {
        **common["optim"], "fused": True}}))
    assert _max_diff(plain, compiled) < 2e-5
    assert _max_diff(plain, graphs) < 2e-5
    assert _max_diff(plain, fused) < 2e-5
