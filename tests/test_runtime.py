"""The device picker and the sharded-run helper shared by training and the commands."""

from __future__ import annotations

import pytest
import torch

from stereosr.cli import main
from stereosr.errors import InputError
from stereosr.runtime import init_distributed, resolve_device, run_sharded


def test_resolve_device_honours_each_kind():
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    if torch.cuda.is_available():
        assert auto == torch.device("cuda", 0)
        assert resolve_device("cuda", local_rank=1) == torch.device(
            "cuda", 1 % torch.cuda.device_count())
    else:
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu7")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS present")
def test_mps_is_not_silently_replaced(monkeypatch, tmp_path, capsys):
    with pytest.raises(InputError, match="MPS is not available"):
        resolve_device("mps")
    # Under torchrun the commands used to turn --device mps into 'auto'.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(InputError, match="MPS is not available"):
        init_distributed("auto", device="mps")
    rc = main(["evaluate", "--data", str(tmp_path), "--device", "mps", "--bicubic-only"])
    assert rc == 2 and "MPS is not available" in capsys.readouterr().err


def test_run_sharded_single_process_is_plain_call():
    assert run_sharded([1, 2, 3], lambda xs: sum(xs)) == [6]
    with pytest.raises(InputError, match="bad"):
        run_sharded([1], lambda xs: (_ for _ in ()).throw(InputError("bad")))
