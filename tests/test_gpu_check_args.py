"""``benchmarks/gpu_check.sh`` and the benchmark scripts refuse arguments they do not know
before doing anything (one line, exit 2): a typo such as ``gpu_check.sh cpu`` must not start
the full CUDA run, nor ``--precisions fp8`` a table of fp32 rows labelled fp8."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # PYTHON=false: should the script get past its arguments, every step fails at once
    env = dict(os.environ, PYTHON="false", OUT=str(tmp_path / "out"), SKIP_COMPILE="1")
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


@pytest.mark.parametrize("args", [("cpu",), ("--device",), ("--device", "gpu"),
                                  ("--device", "cpu", "extra"), ("--device=tpu",)])
def test_bad_arguments_one_line_exit_2(tmp_path, args):
    r = _run(tmp_path, *args)
    assert r.returncode == 2, r.stdout[-500:]
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("gpu_check.sh: ") and "cpu" in r.stderr
    assert not (tmp_path / "out").exists()


def test_help_lists_the_steps(tmp_path):
    r = _run(tmp_path, "--help")
    assert r.returncode == 0 and "--device cpu" in r.stdout and "train_cli" in r.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script, args", [
    ("inference", ["--precisions", "fp8"]),   # ran a whole fp32 table labelled fp8
    ("inference", ["--presets", "Q"]),         # traceback
    ("inference", ["--sizes", "0x12"]),        # traceback
    ("train_throughput", ["--precisions", "fp16,bf16"]),
    ("train_throughput", ["--patch", "5by3"]),
    ("precision", ["--precisions", "half"]),
])
def test_benchmark_arguments_checked(script, args):
    r = subprocess.run([sys.executable, str(SCRIPT.parent / f"{script}.py"), "--device", "cpu",
                        *args], capture_output=True, text=True, timeout=120, check=False,
                       env=dict(os.environ, PYTHONPATH=str(SCRIPT.parents[1] / "src")))
    assert r.returncode == 2, r.stdout[-300:] + r.stderr[-300:]
    assert r.stdout == ""
    assert r.stderr.strip().splitlines()[-1].startswith(f"{script}.py: error: argument {args[0]}")
