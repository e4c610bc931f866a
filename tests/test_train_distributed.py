"""Data-parallel training with 2 gloo processes on CPU, and sharded inference helpers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from train_utils import make_pairs, tiny_config, write_config

from stereosr.runtime import shard, shard_bounds
from stereosr.train.config import config_from_dict

REPO = Path(__file__).resolve().parents[1]
ITERS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, raw: dict[str, Any], out: str,
            resume: bool) -> None:
    import torch.distributed as dist

    from stereosr.runtime import gather_to_rank0
    from stereosr.train.loop import train

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world)})
    torch.set_num_threads(1)
    # The process group made here is reused (and left alone) by train().
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        items = [f"pair{i:02d}" for i in range(11)]
        mine = shard(items)  # rank and world size from the process group
        got = gather_to_rank0([(rank, x, x.upper()) for x in mine])
        with open(os.path.join(out, f"shard{rank}.json"), "w") as fh:
            json.dump({"mine": mine, "gathered": got}, fh)
        result = train(config_from_dict(raw), resume=resume)
        save_file({k: v.contiguous() for k, v in result.weights.items()},
                  os.path.join(out, f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


def spawn_train(raw: dict[str, Any], out: Path, world: int = 2, resume: bool = False
                ) -> list[dict[str, torch.Tensor]]:
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(_worker, args=(world, free_port(), raw, str(out), resume), nprocs=world, join=True)
    return [load_file(str(out / f"rank{r}.safetensors")) for r in range(world)]


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        torch.testing.assert_close(v, b[k], rtol=0, atol=atol, msg=k)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ddp")
    data = make_pairs(root / "pairs", n=3, hw=(48, 144))

    def cfg(run: str, **train: Any) -> dict[str, Any]:
        # eps 0.1 keeps AdamW's update linear in the gradient, so the float differences of a
        # two-process gradient average stay as small as they are (no sign amplification).
        return tiny_config(data, root / run, schedule={"total_iters": ITERS},
                           optim={"lr": 0.05, "eps": 0.1}, data={"batch_size": 4},
                           train={"grad_clip": None, "ema_decay": None, **train})

    ddp = spawn_train(cfg("ddp"), root / "out_ddp")
    return {"root": root, "data": data, "cfg": cfg, "ddp": ddp}


@pytest.mark.slow
def test_ranks_train_in_lockstep_and_match_one_process(setup: dict[str, Any]) -> None:
    from stereosr.train.loop import build_model, train

    r0, r1 = setup["ddp"]
    assert_close(r0, r1, atol=0.0)  # identical weights on both ranks
    cfg = config_from_dict(setup["cfg"]("single"))
    single = train(cfg).weights
    torch.manual_seed(cfg.train.seed)  # train() builds the model right after seeding
    init = build_model(cfg).state_dict()
    moved = max(float((single[k] - init[k]).abs().max()) for k in single)
    assert moved > 1e-3  # training changed the weights: the comparison below is meaningful
    assert_close(r0, single, atol=2e-6)
    # The exported model of rank 0 is the same weights.
    exported = load_file(str(setup["root"] / "ddp" / "model_final.safetensors"))
    assert_close(exported, r0, atol=0.0)


@pytest.mark.slow
def test_torchrun_cli_pause_and_resume(setup: dict[str, Any]) -> None:
    """The real command under torchrun: stopped half way, resumed, equal to the spawned run."""
    root = setup["root"]
    cfg = write_config(root / "torchrun.yaml", setup["cfg"]("torchrun"))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"

    def torchrun(*extra: str) -> subprocess.CompletedProcess[str]:
        for attempt in range(2):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                   f"--master_port={free_port()}", "-m", "stereosr", "train", str(cfg),
                   *extra]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                                 check=False)
            # Once, on a 2-core CI-like machine, a worker died of SIGABRT (cause unknown; not
            # reproduced in 15 reruns). A worker killed by a signal gets one more launch; a
            # failure of the command itself (an exit status) or a repeated one still fails.
            if res.returncode == 0 or attempt or "exitcode  : -" not in res.stderr:
                break
        assert res.returncode == 0, res.stderr[-2000:]
        return res

    res = torchrun("--set", "train.stop_at=2")
    assert "stopped at iteration 2; continue with --resume" in res.stderr
    assert not (root / "torchrun" / "model_final.safetensors").exists()
    torchrun("--resume")
    got = load_file(str(root / "torchrun" / "model_final.safetensors"))
    assert_close(got, setup["ddp"][0], atol=1e-7)
    # Only rank 0 logged: each logged iteration once, also across the pause.
    iters = [json.loads(x)["iter"] for x in
             (root / "torchrun" / "log.jsonl").read_text().splitlines()]
    assert iters == [2, 4]


def test_shard_bounds_cover_disjointly() -> None:
    for n in range(23):
        for world in range(1, 6):
            got = [list(range(*shard_bounds(n, r, world))) for r in range(world)]
            assert [i for part in got for i in part] == list(range(n))
            sizes = [len(p) for p in got]
            assert max(sizes) - min(sizes) <= 1
    assert shard(list("abcde"), 1, 2) == ["d", "e"]
    assert shard(list("abcde"), 0, 2) == ["a", "b", "c"]
    with pytest.raises(ValueError):
        shard_bounds(3, 2, 2)


@pytest.mark.slow
def test_shard_and_gather_with_two_processes(setup: dict[str, Any]) -> None:
    out = setup["root"] / "out_ddp"
    r0 = json.loads((out / "shard0.json").read_text())
    r1 = json.loads((out / "shard1.json").read_text())
    items = [f"pair{i:02d}" for i in range(11)]
    assert r0["mine"] == items[:6] and r1["mine"] == items[6:]
    assert r1["gathered"] is None
    assert [tuple(x) for x in r0["gathered"]] == (
        [(0, x, x.upper()) for x in items[:6]] + [(1, x, x.upper()) for x in items[6:]])
