"""Measurement helpers shared by the benchmarks: random presets, alternating timed runs with
medians, peak memory per call (CUDA allocator or the process's resident set), the machine
line printed above each table."""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from stereosr.models import NAFSSR, build_nafssr, enable_tlc

__all__ = [
    "Measured",
    "alternate",
    "machine_line",
    "pair",
    "random_model",
    "rel_l2",
    "setup_device",
    "sizes_arg",
]


def random_model(preset: str, scale: int = 4, seed: int = 0, tlc: bool = True) -> NAFSSR:
    """A preset with random weights (beta/gamma too, so every branch contributes)."""
    torch.manual_seed(seed)
    model = build_nafssr(preset, scale)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    if tlc:
        enable_tlc(model)
    return model


def pair(h: int, w: int, b: int = 1, seed: int = 1, device: str | torch.device = "cpu"
         ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    left, right = torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)
    return left.to(device), right.to(device)


def rel_l2(a: Any, b: Any) -> float:
    """Relative L2 difference of two tensors or tuples of tensors (``b`` the reference)."""
    a = a if isinstance(a, (tuple, list)) else (a,)
    b = b if isinstance(b, (tuple, list)) else (b,)
    num = sum(float((x.float() - y.float()).pow(2).sum()) for x, y in zip(a, b))
    den = sum(float(y.float().pow(2).sum()) for y in b)
    return (num / den) ** 0.5


def sizes_arg(text: str) -> list[tuple[int, int]]:
    """'128x128,270x480' -> [(128, 128), (270, 480)] (height x width, each >= 1); an argparse
    type, so a bad value is one usage line and exit 2."""
    out = []
    for part in text.split(","):
        try:
            h, w = (int(v) for v in part.strip().lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a size HxW such as 128x128"
                                             ) from None
        if h < 1 or w < 1:
            raise argparse.ArgumentTypeError(f"{part!r}: height and width must be >= 1")
        out.append((h, w))
    return out


def choices_arg(allowed: Sequence[str], upper: bool = False) -> Callable[[str], str]:
    """An argparse type for a comma-separated subset of ``allowed`` (upper-cased first when
    ``upper``); returns the cleaned comma-joined text, refuses anything else (one line, exit 2)
    instead of running a mislabelled or failing table."""
    def parse(text: str) -> str:
        items = [t.strip().upper() if upper else t.strip() for t in text.split(",")]
        bad = [t for t in items if t not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{', '.join(map(repr, bad))} not among "
                                             f"{','.join(allowed)}")
        return ",".join(items)
    return parse


def _rss_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_cpu_peak() -> float:
    """Return freed heap to the OS, reset VmHWM to the current resident size; returns it."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # pragma: no cover - not glibc
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:  # pragma: no cover - not Linux
        pass
    return _rss_mb("VmRSS")


class Measured:
    """Times (s) and peak memory above the baseline (MB) of repeated calls."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.peak_mb = 0.0
        self.result: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")


def _once(fn: Callable[[], Any], device: torch.device, m: Measured) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        m.result = fn()
        end.record()
        torch.cuda.synchronize(device)
        m.times.append(start.elapsed_time(end) / 1e3)
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        base = _reset_cpu_peak()
        t0 = time.perf_counter()
        m.result = fn()
        m.times.append(time.perf_counter() - t0)
        peak = _rss_mb("VmHWM") - base
    m.peak_mb = max(m.peak_mb, peak)


def alternate(fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device,
              warmup: int = 1) -> dict[str, Measured]:
    """Call each function ``warmup`` times, then ``repeats`` rounds in turn (a, b, a, b, ...)
    so that all see the same machine load; per function the times, the peak memory above
    what was allocated before the call, and the last result."""
    out = {k: Measured() for k in fns}
    for _ in range(warmup):
        for f in fns.values():
            f()
    for _ in range(repeats):
        for k, f in fns.items():
            out[k].result = None
            _once(f, device, out[k])
    return out


def setup_device(name: str, threads: int) -> torch.device:
    """The benchmark device (exit 2 with one line when CUDA is asked for and missing); sets
    the CPU thread count."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device available; use --device cpu")
    torch.set_num_threads(threads)
    return device


def machine_line(device: torch.device) -> str:
    """One line naming the machine, torch and the load."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return (f"torch {torch.__version__}, {name}, CUDA {torch.version.cuda}; "
                f"{os.cpu_count()} CPUs")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"torch {torch.__version__}, {cpu}, {torch.get_num_threads()} threads of "
            f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
