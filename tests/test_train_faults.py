"""Faults of training runs: divergence, EMA quality, logs and temporary files after a kill,
a full disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from train_utils import make_pairs, tiny_config, write_config

from stereosr.cli import main
from stereosr.train.config import config_from_dict
from stereosr.train.loop import train, validate
from stereosr.train.state import list_checkpoints, load_training_state

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pairs(tmp_path_factory.mktemp("faults") / "pairs", n=3, hw=(48, 144))


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["bf16", "none"])
def test_diverging_run_exits_nonzero_and_writes_nothing_nonfinite(
        pairs: Path, tmp_path: Path, amp: str, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    raw = tiny_config(pairs, run, optim={"lr": 1e6}, schedule={"total_iters": 40},
                      train={"amp": amp, "checkpoint_every": 5, "ema_decay": 0.9})
    code = main(["train", str(write_config(tmp_path / "c.yaml", raw))])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert len(err) == 1 and "not finite" in err[0]
    # The advice is one that works: a resumed run keeps its config, so a new run folder.
    assert err[0].endswith("lower optim.lr (or check the data) and start again with a new "
                           "train.run_dir; resuming keeps this run's config and would diverge "
                           "again")
    assert main(["train", str(tmp_path / "c.yaml"), "--resume", "--set", "optim.lr=1e-3"]) == 2
    assert not (run / "model_final.safetensors").exists()
    for _, path in list_checkpoints(run):
        st = load_training_state(path)
        for group in (st.params, st.params_ema):
            assert all(torch.isfinite(v).all() for v in group.values()), path


def test_nonfinite_gradient_with_finite_loss_is_skipped(pairs: Path, tmp_path: Path) -> None:
    """A finite loss whose gradient overflows (the fp32 case of a huge learning rate)."""
    from stereosr.train import loop

    raw = tiny_config(pairs, tmp_path / "run", schedule={"total_iters": 4},
                      train={"max_nonfinite": 2})
    real_clip = torch.nn.utils.clip_grad_norm_

    def inf_norm(params: object, max_norm: float) -> torch.Tensor:
        real_clip(params, max_norm)  # type: ignore[arg-type]
        return torch.tensor(float("inf"))

    mp = pytest.MonkeyPatch()
    mp.setattr(loop.torch.nn.utils, "clip_grad_norm_", inf_norm)
    try:
        with pytest.raises(loop.TrainingDiverged, match="2 iterations in a row"):
            train(config_from_dict(raw))
    finally:
        mp.undo()
    st = load_training_state(list_checkpoints(tmp_path / "run")[-1][1])
    assert st.meta["counters"]["skipped_nonfinite"] == 2


@pytest.mark.slow
def test_ema_export_no_worse_than_raw_weights_after_200_iterations(pairs: Path,
                                                                   tmp_path: Path) -> None:
    from stereosr.data.datasets import StereoSRDataset
    from stereosr.models.nafssr import build_nafssr
    from stereosr.train.data import PairCache

    run = tmp_path / "run"
    raw = tiny_config(pairs, run, schedule={"total_iters": 200, "eta_min": 1e-4},
                      optim={"lr": 2e-3},
                      train={"ema_decay": 0.999, "checkpoint_every": 200, "log_every": 50})
    result = train(config_from_dict(raw))
    st = load_training_state(list_checkpoints(run)[-1][1])
    assert st.meta["ema_updates"] == 200
    exported = load_file(str(run / "model_final.safetensors"))
    for k, v in exported.items():
        assert torch.equal(v, st.params_ema[k])
    cache = PairCache.from_dataset(StereoSRDataset(pairs, 2))

    def score(weights: dict[str, torch.Tensor]) -> float:
        net = build_nafssr("T", 2, width=8, num_blocks=2)
        net.load_state_dict(weights)
        return float(np.mean([r[1] for r in validate(net, cache.pairs, torch.device("cpu"),
                                                     tlc_size=None)]))

    torch.manual_seed(1)  # the run's seed: its initial weights
    init = build_nafssr("T", 2, width=8, num_blocks=2).state_dict()
    ema_psnr, raw_psnr, init_psnr = score(exported), score(st.params), score(init)
    print(f"EMA {ema_psnr:.3f} dB, raw {raw_psnr:.3f} dB, initial {init_psnr:.3f} dB")
    assert ema_psnr >= raw_psnr - 0.01, (ema_psnr, raw_psnr)
    # A plain EMA (decay 0.999 from the initial weights) would still hold 0.999**200 = 82 % of
    # them and score near the initial model.
    assert ema_psnr > init_psnr + 3.0
    assert result.iteration == 200


def test_resume_after_kill_before_first_checkpoint_keeps_single_records(
        pairs: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    raw = tiny_config(pairs, run, schedule={"total_iters": 6},
                      train={"checkpoint_every": 100, "log_every": 2})
    # What a run killed at iteration 5 (no checkpoint yet) leaves: logs and a temp file.
    train(config_from_dict(tiny_config(pairs, run, schedule={"total_iters": 6},
                                       train={"checkpoint_every": 100, "log_every": 2,
                                              "stop_at": 5})))
    for _, p in list_checkpoints(run):
        p.unlink()
    stale = run / "checkpoints" / ".iter_00000005.safetensors.stereosr-k1ll3d00.tmp"
    stale.write_bytes(b"partial")
    (run / ".model_best.safetensors.stereosr-x0000000.tmp").write_bytes(b"partial")
    assert main(["train", str(write_config(tmp_path / "c.yaml", raw)), "--resume"]) == 0
    recs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    iters = [r["iter"] for r in recs if r["kind"] == "train"]
    assert iters == [2, 4, 6]
    assert all(r["it_s"] > 0 for r in recs if r["kind"] == "train")
    rows = (run / "train.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["iter", "2", "4", "6"]
    # rows kept by the resume and rows appended after it end their lines alike
    assert b"\r" not in (run / "train.csv").read_bytes()
    assert not stale.exists() and not list(run.rglob("*.tmp"))


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                         capture_output=True, check=False)
    return res.returncode == 0


@pytest.mark.slow
def test_unusable_run_folder_gives_one_line(pairs: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # A run folder under a file, and one whose lock file name is taken by a folder.
    (tmp_path / "afile").write_text("")
    taken = tmp_path / "taken"
    (taken / ".lock").mkdir(parents=True)
    cases = [(tmp_path / "afile" / "run", "cannot create output folder (Not a directory)"),
             (taken, ".lock: cannot open the run folder's lock file (Is a directory)")]
    for run_dir, expect in cases:
        cfg = write_config(tmp_path / "c.yaml", tiny_config(pairs, run_dir))
        assert main(["train", str(cfg)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expect in err[0], err


def test_disk_full_during_training_gives_one_line(pairs: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "96k"):
        pytest.skip("needs root and tmpfs to simulate a full disk")
    try:
        run = disk / "run"
        raw = tiny_config(pairs, run, schedule={"total_iters": 40},
                          train={"checkpoint_every": 1, "keep_last": 40})
        cfg = write_config(tmp_path / "c.yaml", raw)
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
        res = subprocess.run([sys.executable, "-m", "stereosr", "train", str(cfg)], env=env,
                             capture_output=True, text=True, check=False)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2, res.stderr
        assert len(lines) == 1 and "no space left" in lines[0], res.stderr
        assert not list(run.rglob("*.tmp"))
        for _, path in list_checkpoints(run):
            load_training_state(path)  # every checkpoint written is whole
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_timed_session_validates_checkpoints_and_resumes(pairs: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    raw = tiny_config(pairs, run, model={"variant": "custom", "width": 8, "num_blocks": 2},
                      schedule={"total_iters": 6}, val={"root": str(pairs), "every": 0},
                      train={"stop_after_minutes": 1e-9, "checkpoint_every": 100})
    first = train(config_from_dict(raw))
    assert first.paused and first.iteration == 1 and first.final_model is None
    assert [i for i, _ in list_checkpoints(run)] == [1]
    vals = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in vals if r["kind"] == "val"] == [1]
    assert (run / "model_best.safetensors").is_file()
    raw["train"]["stop_after_minutes"] = None  # a runtime setting: the run resumes
    done = train(config_from_dict(raw), resume=True)
    assert done.iteration == 6 and done.final_model is not None


def test_custom_variant_needs_width_and_blocks() -> None:
    from stereosr.errors import InputError
    from stereosr.train.loop import build_model

    with pytest.raises(InputError, match="'custom' needs model.width and model.num_blocks"):
        config_from_dict({"model": {"variant": "custom", "width": 32}})
    cfg = config_from_dict({"model": {"variant": "custom", "width": 12, "num_blocks": 3}})
    net = build_model(cfg)
    assert (net.config.width, net.config.num_blocks, net.config.drop_path) == (12, 3, 0.0)


@pytest.mark.slow
def test_second_process_on_a_running_run_is_refused(pairs: Path, tmp_path: Path) -> None:
    """While one run trains, a second process on the same run folder (e.g. --resume typed
    twice) stops with one line and changes nothing."""
    run = tmp_path / "run"
    raw = tiny_config(pairs, run, schedule={"total_iters": 100000, "kind": "constant"},
                      train={"checkpoint_every": 5, "log_every": 5})
    cfg = write_config(tmp_path / "c.yaml", raw)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    first = subprocess.Popen([sys.executable, "-m", "stereosr", "train", str(cfg)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time

        deadline = time.time() + 120
        while not list_checkpoints(run):
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "stereosr", "train", str(cfg),
                                 "--resume"], env=env, capture_output=True, text=True,
                                check=False)
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 2, second.stderr
        assert len(lines) == 1 and "another training process is using this run folder" in lines[0]
        assert first.poll() is None  # the first run goes on
    finally:
        first.terminate()
        first.wait(timeout=60)
    # After the first run ends, --resume works again.
    assert first.returncode == 143 or first.returncode == 130 or first.returncode == 0
