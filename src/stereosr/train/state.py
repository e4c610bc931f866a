"""Training checkpoints: everything needed to resume a run bit-for-bit, without pickle.

One checkpoint is one ``.safetensors`` file, written atomically
(``run_dir/checkpoints/iter_00001000.safetensors``):

- tensors: ``params.*`` (model, official key names), ``params_ema.*`` (EMA copy, optional),
  ``optim.<param index>.<name>`` (AdamW moments and step), ``loss.<term>.<buffer>`` (fitted
  loss statistics), ``rng.torch``, ``rng.cuda.<device>``, ``rng.numpy_keys``;
- metadata ``stereosr_train_state``: JSON with counters, the optimizer's param groups, the
  grad scaler, Python's and NumPy's RNG scalars.

Nothing is unpickled when resuming: safetensors holds only tensors and a JSON string.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError, InputError, OutputError
from ..files import check_writable_dir
from ..io import atomic_write_bytes

__all__ = [
    "STATE_KEY",
    "RunLock",
    "TrainingState",
    "atomic_save_tensors",
    "capture_rng",
    "checkpoint_dir",
    "checkpoint_path",
    "latest_checkpoint",
    "list_checkpoints",
    "load_training_state",
    "optimizer_from_flat",
    "optimizer_to_flat",
    "prune_checkpoints",
    "remove_stale_temp_files",
    "restore_rng",
    "save_training_state",
]

STATE_KEY = "stereosr_train_state"
FORMAT = "stereosr.train_state.v1"
_CKPT_RE = re.compile(r"^iter_(\d+)\.safetensors$")


@dataclass
class TrainingState:
    """A loaded checkpoint: tensors grouped by prefix, plus the JSON part."""

    params: dict[str, Tensor]
    params_ema: dict[str, Tensor]
    optim: dict[str, Tensor]
    loss: dict[str, Tensor]
    rng: dict[str, Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def iteration(self) -> int:
        return int(self.meta["counters"]["iteration"])


def checkpoint_dir(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: str | os.PathLike[str], iteration: int) -> Path:
    return checkpoint_dir(run_dir) / f"iter_{iteration:08d}.safetensors"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """(iteration, path) of the run's training checkpoints, oldest first."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _CKPT_RE.match(p.name)
        if m and p.is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def prune_checkpoints(run_dir: str | os.PathLike[str], keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest checkpoints; returns the deleted paths."""
    found = list_checkpoints(run_dir)
    doomed = [p for _, p in found[:-keep]] if keep > 0 else [p for _, p in found]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def remove_stale_temp_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files (``.NAME.stereosr-XXXXXXXX.tmp``) that a run killed while writing left in
    ``run_dir`` and its ``checkpoints/`` folder; returns the deleted paths. Only call it when no
    other process writes to the run (a run folder has one writer)."""
    from ..files import remove_stale_temps

    doomed: list[Path] = []
    for folder in (Path(run_dir), checkpoint_dir(run_dir)):
        doomed += remove_stale_temps(folder)
    return doomed


class RunLock:
    """Exclusive lock on a run folder (a POSIX record lock, ``lockf``, on ``run_dir/.lock``)
    for the life of a run,
    so that a second process (a ``--resume`` typed twice, a run started while one is going)
    refuses to start instead of truncating the logs and overwriting the checkpoints of the
    first. Released when the run ends or its process dies; record locks are not inherited by
    forked data workers, so a worker that outlives a killed run does not hold it. Without
    ``fcntl`` (Windows) it does nothing. A context manager; ``enabled=False`` (non-zero ranks) makes it a no-op."""

    def __init__(self, run_dir: str | os.PathLike[str], enabled: bool = True) -> None:
        self.path = Path(run_dir) / ".lock"
        self.enabled = enabled
        self._fd: int | None = None

    def __enter__(self) -> RunLock:  # noqa: PYI034 (a final class)
        try:
            import fcntl
        except ImportError:
            return self
        if not self.enabled:
            return self
        check_writable_dir(self.path.parent)  # one line for a read-only, full or odd place
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot open the run folder's lock file "
                              f"({exc.strerror}); remove it or set train.run_dir to a new "
                              "folder") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise InputError(f"{self.path.parent}: another training process is using this run "
                             "folder; wait for it to end (or stop it), or set train.run_dir to "
                             "a new folder") from None
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


def capture_rng() -> tuple[dict[str, Tensor], dict[str, Any]]:
    """States of Python's, NumPy's (global) and torch's (CPU and CUDA) generators."""
    tensors: dict[str, Tensor] = {"torch": torch.get_rng_state().clone()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = st.clone()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss = random.getstate()
    scalars = {
        "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    return tensors, scalars


def restore_rng(tensors: Mapping[str, Tensor], scalars: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(tensors["torch"].to(torch.uint8))
    cuda = sorted(k for k in tensors if k.startswith("cuda."))
    if cuda and torch.cuda.is_available():
        states = [tensors[k].to(torch.uint8) for k in cuda]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    npy = scalars["numpy"]
    keys = tensors["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    py = scalars["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Optimizer state as (tensors ``<param>.<name>``, JSON part with non-tensor values)."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            if isinstance(value, Tensor):
                tensors[f"{idx}.{name}"] = value.detach().to("cpu", copy=True).contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = _jsonable(value)
    return tensors, {"param_groups": _jsonable(sd["param_groups"]), "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: Mapping[str, Tensor],
                        info: Mapping[str, Any]) -> None:
    """Load what :func:`optimizer_to_flat` produced into ``opt``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, _, name = key.partition(".")
        state.setdefault(int(idx), {})[name] = value
    for idx, values in info.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    groups = []
    for g in info["param_groups"]:
        g = dict(g)
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


def atomic_save_tensors(path: str | os.PathLike[str], tensors: Mapping[str, Tensor],
                        metadata: Mapping[str, str]) -> Path:
    """Write a safetensors file atomically (never half-written), with the permissions the
    umask gives (safetensors' own ``save_file`` would make it 0600).

    Raises :class:`~stereosr.errors.OutputError` (one line) when the file system refuses.
    """
    from safetensors.torch import save

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=dict(metadata))
    atomic_write_bytes(p, data, overwrite=True)
    return p


def save_training_state(path: str | os.PathLike[str], *, params: Mapping[str, Tensor],
                        params_ema: Mapping[str, Tensor] | None,
                        optimizer: torch.optim.Optimizer,
                        loss_state: Mapping[str, Tensor], meta: Mapping[str, Any]) -> Path:
    """Write one training checkpoint (RNG states are captured here). ``meta`` must be JSON."""
    tensors: dict[str, Tensor] = {}
    for k, v in params.items():
        tensors[f"params.{k}"] = v.detach().to("cpu").clone()
    for k, v in (params_ema or {}).items():
        tensors[f"params_ema.{k}"] = v.detach().to("cpu").clone()
    opt_t, opt_info = optimizer_to_flat(optimizer)
    for k, v in opt_t.items():
        tensors[f"optim.{k}"] = v
    for k, v in loss_state.items():
        tensors[f"loss.{k}"] = v.detach().to("cpu").clone()
    rng_t, rng_info = capture_rng()
    for k, v in rng_t.items():
        tensors[f"rng.{k}"] = v
    doc = {"format": FORMAT, "optimizer": opt_info, "rng": rng_info, **meta}
    return atomic_save_tensors(path, tensors, {STATE_KEY: json.dumps(doc)})


def load_training_state(path: str | os.PathLike[str]) -> TrainingState:
    """Read a training checkpoint written by :func:`save_training_state`."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    groups: dict[str, dict[str, Tensor]] = {g: {} for g in
                                            ("params", "params_ema", "optim", "loss", "rng")}
    try:
        with safe_open(str(p), framework="pt", device="cpu") as fh:
            raw_meta = (fh.metadata() or {}).get(STATE_KEY)
            for key in fh.keys():  # noqa: SIM118 (safe_open has no __iter__)
                head, _, rest = key.partition(".")
                if head in groups:
                    groups[head][rest] = fh.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: not a readable training checkpoint ({exc})") from None
    if raw_meta is None:
        raise CheckpointError(f"{p}: not a stereosr training checkpoint (no {STATE_KEY} metadata)")
    try:
        meta = json.loads(raw_meta)
    except json.JSONDecodeError:
        raise CheckpointError(f"{p}: corrupt training-state metadata") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: unsupported training checkpoint format {meta.get('format')!r}")
    return TrainingState(meta=meta, **groups)
