"""Run logs: JSON lines (every record), CSV (one file per kind) and TensorBoard (optional)."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["RunLogger", "truncate_logs"]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


def truncate_logs(run_dir: str | os.PathLike[str], iteration: int) -> None:
    """Drop records with ``iter > iteration`` (written after the checkpoint a run resumes
    from), so the logs of a resumed run read like those of an uninterrupted one."""
    root = Path(run_dir)
    jl = root / "log.jsonl"
    if jl.is_file():
        keep = []
        for line in jl.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if int(rec.get("iter", 0)) <= iteration:
                keep.append(line)
        jl.write_text("".join(f"{x}\n" for x in keep), encoding="utf-8")
    for path in root.glob("*.csv"):
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines:
            continue
        header, rows = lines[0], lines[1:]
        cols = header.split(",")
        i = cols.index("iter") if "iter" in cols else None
        kept = [header]
        for r in rows:
            parts = r.split(",")
            if i is None or (len(parts) == len(cols) and parts[i].isdigit()
                             and int(parts[i]) <= iteration):
                kept.append(r)
        path.write_text("".join(f"{x}\n" for x in kept), encoding="utf-8")


class RunLogger:
    """Append records to ``run_dir/log.jsonl`` and ``run_dir/<kind>.csv``; mirror scalars to
    TensorBoard when ``torch.utils.tensorboard`` can be imported. Disabled on non-zero ranks."""

    def __init__(self, run_dir: str | os.PathLike[str], *, enabled: bool = True,
                 tensorboard: bool = True) -> None:
        self.root = Path(run_dir)
        self.enabled = enabled
        self._tb: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._tb = None
            else:
                self._tb = SummaryWriter(str(self.root / "tensorboard"))

    def log(self, kind: str, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        rec = {"kind": kind, **{k: _clean(v) for k, v in record.items()}}
        with open(self.root / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        path = self.root / f"{kind}.csv"
        fields = [k for k in rec if k != "kind"]
        new = not path.is_file() or path.stat().st_size == 0
        if not new:
            with open(path, encoding="utf-8") as fh:
                header = fh.readline().strip().split(",")
            if header != fields:  # columns changed (e.g. a resumed run with other parts)
                fields = header
        with open(path, "a", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore",
                                    lineterminator="\n")
            if new:
                writer.writeheader()
            writer.writerow({k: rec.get(k, "") for k in fields})
        if self._tb is not None and "iter" in rec:
            step = int(rec["iter"])
            for k, v in rec.items():
                if k not in ("kind", "iter") and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
