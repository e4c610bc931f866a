"""A run killed with SIGKILL and resumed ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_utils import make_pairs

from stereosr.train.state import list_checkpoints, load_training_state

REPO = Path(__file__).resolve().parents[1]


CONFIG = """
name: resume_test
model: {{variant: T, scale: 2, width: 8, num_blocks: 2, drop_path: 0.2}}
data: {{train_root: "{data}", lr_patch: [12, 36], batch_size: 2, num_workers: {workers}}}
optim: {{lr: 2.0e-3}}
schedule: {{total_iters: {iters}, eta_min: 1.0e-5, warmup_iters: 5}}
loss: {{terms: [{{type: mse}}]}}
train: {{run_dir: "{run}", seed: 3, grad_clip: 0.05, ema_decay: 0.9, checkpoint_every: 10,
        keep_last: 2, log_every: 5, threads: 1, progress: false, tensorboard: false}}
"""


def _cmd(cfg: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "stereosr", "train", str(cfg), *extra]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow
def test_kill9_resume_matches_uninterrupted(tmp_path: Path) -> None:
    workers = 1  # a DataLoader worker process: its samples must not depend on its RNG
    data = make_pairs(tmp_path / "pairs")
    iters = 150
    cfg_a = tmp_path / "a.yaml"
    cfg_b = tmp_path / "b.yaml"
    run_a, run_b = tmp_path / "run_a", tmp_path / "run_b"
    for cfg, run in ((cfg_a, run_a), (cfg_b, run_b)):
        cfg.write_text(CONFIG.format(data=data, run=run, iters=iters, workers=workers))

    # Run A: killed with SIGKILL as soon as its first checkpoint exists.
    proc = subprocess.Popen(_cmd(cfg_a), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list_checkpoints(run_a):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError(f"run ended before a checkpoint: {proc.stderr.read()!r}")
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_a / "model_final.safetensors").exists()
    killed_at = list_checkpoints(run_a)[-1][0]
    assert killed_at < iters

    # Resume A to the end; run B uninterrupted.
    res = subprocess.run(_cmd(cfg_a, "--resume"), env=_env(), capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr
    res = subprocess.run(_cmd(cfg_b), env=_env(), capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr

    final_a = load_file(str(run_a / "model_final.safetensors"))
    final_b = load_file(str(run_b / "model_final.safetensors"))
    assert final_a.keys() == final_b.keys()
    for k in final_a:
        torch.testing.assert_close(final_a[k], final_b[k], rtol=0, atol=1e-7)
    st_a = load_training_state(list_checkpoints(run_a)[-1][1])
    st_b = load_training_state(list_checkpoints(run_b)[-1][1])
    for group in ("params", "params_ema", "optim"):
        ga, gb = getattr(st_a, group), getattr(st_b, group)
        assert ga.keys() == gb.keys()
        for k in ga:
            torch.testing.assert_close(ga[k], gb[k], rtol=0, atol=1e-7)
    assert torch.equal(st_a.rng["torch"], st_b.rng["torch"])
    # The weights moved away from the init: the comparison is not vacuous.
    assert float(final_a["intro.weight"].abs().sum()) > 0
    # Logs of the resumed run have each iteration once.
    import json

    iters_logged = [json.loads(x)["iter"] for x in
                    (run_a / "log.jsonl").read_text().splitlines()]
    assert iters_logged == list(range(5, iters + 1, 5))


@pytest.mark.slow
def test_sigterm_checkpoints_and_stops(tmp_path: Path) -> None:
    data = make_pairs(tmp_path / "pairs", n=2, hw=(48, 144))
    cfg = tmp_path / "c.yaml"
    run = tmp_path / "run"
    cfg.write_text(CONFIG.format(data=data, run=run, iters=100_000, workers=1))
    proc = subprocess.Popen(_cmd(cfg), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list_checkpoints(run):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143  # 128 + SIGTERM, as every command exits on SIGTERM
    last = list_checkpoints(run)[-1][0]
    assert f"stopped at iteration {last}; continue with --resume" in err
    assert load_training_state(list_checkpoints(run)[-1][1]).iteration == last
