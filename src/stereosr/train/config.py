"""Training configuration: YAML -> frozen, typed dataclasses.

A config file is a nested mapping whose sections mirror :class:`TrainConfig`. Every key is
checked: an unknown key or a value of the wrong type raises :class:`~stereosr.errors.InputError`
naming the key by its dotted path (``optim.lrr``), before any training starts.

Batch size: ``data.batch_size`` is the TOTAL number of samples per optimizer step. Each process
of a distributed run gets ``batch_size / (world_size * train.accumulate)`` samples per forward
pass, so the official recipe (batch 32 = 4 per GPU x 8 GPUs) is ``batch_size: 32`` whatever the
number of processes, as long as it divides evenly.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from ..errors import InputError

__all__ = [
    "RUNTIME_ONLY_KEYS",
    "DataSection",
    "DistributedSection",
    "LossSection",
    "LossTerm",
    "ModelSection",
    "OptimSection",
    "ScheduleSection",
    "TrainConfig",
    "TrainSection",
    "ValSection",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
]


@dataclass(frozen=True)
class ModelSection:
    """The network: a NAFSSR preset (``T``, ``S``, ``B``, ``L``), optionally with width/blocks/
    drop path overridden, or ``custom``: ``width`` and ``num_blocks`` given, drop path 0 unless
    set."""

    variant: Literal["T", "S", "B", "L", "custom"] = "T"
    scale: int = 4
    width: int | None = None
    num_blocks: int | None = None
    drop_path: float | None = None
    init: str | None = None  # start from these weights (a checkpoint path), e.g. to fine-tune


@dataclass(frozen=True)
class DataSection:
    """Training data: a folder of HR stereo pairs, or a list of folders used together; LR
    views are made by MATLAB bicubic where the layout has no LR files."""

    train_root: str | tuple[str, ...] = ""
    layout: str = "auto"
    lr_patch: tuple[int, int] = (30, 90)  # (height, width) of LR training patches
    patch_tries: int = 1  # keep the most textured of this many random crops
    view_gain: float = 0.0  # right view's own exposure/colour gains, up to this fraction
    view_shift: int = 0  # right view moved up/down by up to this many HR rows
    view_shift_prob: float | None = None  # shift only this fraction of samples (never by 0)
    batch_size: int = 32  # total per optimizer step, over all processes and accumulation
    num_workers: int = 0
    hflip: bool = True  # horizontal flip of both views, then left/right swap
    vflip: bool = True
    rgb_perm: bool = True  # one random channel permutation shared by both views
    cache_dtype: Literal["uint8", "float32"] = "uint8"
    max_pairs: int | None = None  # use only the first N pairs (sorted by name)


@dataclass(frozen=True)
class OptimSection:
    """AdamW."""

    lr: float = 3e-3
    betas: tuple[float, float] = (0.9, 0.9)
    weight_decay: float = 0.0
    eps: float = 1e-8
    fused: bool | None = None  # one fused AdamW kernel; null = on CUDA, off elsewhere


@dataclass(frozen=True)
class ScheduleSection:
    """Learning rate: optional linear warm-up, then cosine annealing to ``eta_min``."""

    total_iters: int = 400_000
    kind: Literal["cosine", "constant"] = "cosine"
    eta_min: float = 1e-7
    warmup_iters: int = 0


@dataclass(frozen=True)
class LossTerm:
    """One weighted part of the training loss.

    ``type``: ``l1``, ``mse``, ``charbonnier``, ``perceptual``, ``texture``, ``distill``,
    ``quality``, ``consistency``; ``options`` are keyword arguments of that loss.
    """

    type: str = "mse"
    weight: float = 1.0
    name: str | None = None  # logged name; defaults to ``type``
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LossSection:
    """The loss terms; ``allow_quality_only`` lets a ``quality`` term train without a
    fidelity term (refused by default: alone it can be gamed, see docs/losses.md)."""

    terms: tuple[LossTerm, ...] = (LossTerm(),)
    allow_quality_only: bool = False


@dataclass(frozen=True)
class TrainSection:
    """The loop: seeds, clipping, EMA, precision, checkpoints and logging."""

    run_dir: str = "runs/nafssr"
    seed: int = 0
    grad_clip: float | None = 0.01  # max global gradient L2 norm; null disables
    ema_decay: float | None = None  # e.g. 0.999; null disables the EMA copy
    amp: Literal["none", "bf16", "fp16"] = "none"  # mixed precision (GPU; bf16 also on CPU)
    channels_last: bool = False
    compile: bool = False  # torch.compile the model forward and the loss together
    # torch.compile mode: "reduce-overhead" replays CUDA graphs (training shapes are static),
    # "max-autotune" also searches kernel configurations (longer compile)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    accumulate: int = 1  # micro-batches per optimizer step
    checkpoint_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    max_nonfinite: int = 10  # stop after this many non-finite losses in a row
    stop_at: int | None = None  # pause (checkpoint, exit) after this iteration; resume later
    stop_after_minutes: float | None = None  # pause (validate, checkpoint, exit) after this time
    threads: int | None = None  # torch CPU threads per process; null = all cores / processes
    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress: bool = True
    tensorboard: bool = True  # when the tensorboard package is installed


@dataclass(frozen=True)
class ValSection:
    """Validation on a folder of HR pairs (or a list of folders): PSNR/SSIM, score =
    (left + right) / 2 per pair, averaged over all pairs."""

    root: str | tuple[str, ...] | None = None
    layout: str = "auto"
    every: int = 0  # iterations between validations; 0 = only at the end when root is set
    max_pairs: int | None = None
    tlc: bool = True  # score with the test-time local converter, as official models run
    use_ema: bool = True  # score (and export) the EMA weights when an EMA is kept


@dataclass(frozen=True)
class DistributedSection:
    backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: NCCL on GPUs, gloo on CPU
    timeout_s: int = 1800


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run."""

    name: str = "nafssr"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    loss: LossSection = field(default_factory=LossSection)
    train: TrainSection = field(default_factory=TrainSection)
    val: ValSection = field(default_factory=ValSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)


#: Keys that may differ between a run and its resumption (they do not change the result).
RUNTIME_ONLY_KEYS: frozenset[str] = frozenset({
    "data.num_workers", "train.threads", "train.progress", "train.log_every",
    "train.tensorboard", "train.checkpoint_every", "train.keep_last", "train.max_nonfinite",
    "train.stop_at", "train.stop_after_minutes", "train.compile", "train.compile_mode",
})

_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^[-+]?(inf|nan)$", re.IGNORECASE)


_PLAIN_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
                type(None): "null"}


def _type_name(tp: Any) -> str:
    """The annotation ``tp`` in words: ``str | tuple[str, ...]`` -> 'a string or a list of
    strings'."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _type_name(args[0]).removeprefix("a ").removeprefix("an ")
        return f"a list of {item}s"
    if origin is tuple:
        return f"a list of {len(args)} values"
    if tp in _PLAIN_NAMES:
        return _PLAIN_NAMES[tp]
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (lists -> tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except InputError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise InputError(f"config: {path} must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise InputError(f"config: {path} must be one of {choices}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise InputError(f"config: {path} must be a mapping of settings, got {value!r}")
        return _build(tp, value, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"config: {path} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{path}.{i}") for i, v in enumerate(value))
        if len(value) != len(args):
            raise InputError(f"config: {path} must be a list of {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, f"{path}.{i}") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"config: {path} must be a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"config: {path} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"config: {path} must be an integer, got {value!r}")
        return value
    if tp is float:
        # PyYAML reads "3e-3" (no dot) as a string; accept any spelling of a real number.
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"config: {path} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise InputError(f"config: {path} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {path}")  # programming error


def _build(cls: Any, raw: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else str(key)
            hint = _closest(str(key), names)
            raise InputError(f"config: unknown key {where!r}{hint}")
    kwargs = {}
    for key, value in raw.items():
        path = f"{prefix}.{key}" if prefix else key
        kwargs[key] = _convert(value, hints[key], path)
    return cls(**kwargs)


def _closest(key: str, names: set[str]) -> str:
    import difflib

    match = difflib.get_close_matches(key, sorted(names), n=1)
    return f" (did you mean {match[0]!r}?)" if match else f" (known: {', '.join(sorted(names))})"


def _check(cfg: TrainConfig) -> None:
    """Cross-field value checks (ranges) that types alone cannot express."""
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise InputError(f"config: {msg}")

    m, d, o, s, t = cfg.model, cfg.data, cfg.optim, cfg.schedule, cfg.train
    need(m.scale in (2, 3, 4, 8), f"model.scale must be 2, 3, 4 or 8, got {m.scale}")
    need(m.width is None or (m.width >= 2 and m.width % 2 == 0),
         f"model.width must be an even integer >= 2, got {m.width}")
    need(m.num_blocks is None or m.num_blocks >= 1, f"model.num_blocks must be >= 1, got "
         f"{m.num_blocks}")
    need(m.variant != "custom" or (m.width is not None and m.num_blocks is not None),
         "model.variant 'custom' needs model.width and model.num_blocks")
    need(m.drop_path is None or 0.0 <= m.drop_path < 1.0,
         f"model.drop_path must be in [0, 1), got {m.drop_path}")
    need(all(v >= 4 for v in d.lr_patch), f"data.lr_patch must be at least 4x4, got {d.lr_patch}")
    need(d.patch_tries >= 1, f"data.patch_tries must be >= 1, got {d.patch_tries}")
    need(0.0 <= d.view_gain < 1.0, f"data.view_gain must be in [0, 1), got {d.view_gain}")
    need(int(d.view_shift) == d.view_shift and 0 <= d.view_shift <= 8,
         f"data.view_shift must be a whole number of HR rows from 0 to 8, got {d.view_shift}")
    need(d.view_shift_prob is None or (0.0 < d.view_shift_prob <= 1.0 and d.view_shift > 0),
         f"data.view_shift_prob must be in (0, 1] and needs data.view_shift > 0, got "
         f"{d.view_shift_prob}")
    need(d.batch_size >= 1, f"data.batch_size must be >= 1, got {d.batch_size}")
    need(d.num_workers >= 0, f"data.num_workers must be >= 0, got {d.num_workers}")
    need(d.max_pairs is None or d.max_pairs >= 1, "data.max_pairs must be >= 1")
    need(o.lr > 0 and math.isfinite(o.lr), f"optim.lr must be a positive number, got {o.lr}")
    need(all(0.0 <= b < 1.0 for b in o.betas), f"optim.betas must be in [0, 1), got {o.betas}")
    need(o.weight_decay >= 0, "optim.weight_decay must be >= 0")
    need(s.total_iters >= 1, f"schedule.total_iters must be >= 1, got {s.total_iters}")
    need(0 <= s.warmup_iters < s.total_iters,
         f"schedule.warmup_iters must be in [0, total_iters), got {s.warmup_iters}")
    need(0 <= s.eta_min <= o.lr, f"schedule.eta_min must be in [0, optim.lr], got {s.eta_min}")
    need(len(cfg.loss.terms) >= 1, "loss.terms must list at least one loss")
    for i, term in enumerate(cfg.loss.terms):
        # a negative weight maximises that loss (and would pass for a fidelity term beside the
        # KLT quality loss); NaN/inf make every step non-finite
        need(math.isfinite(term.weight) and term.weight >= 0,
             f"loss.terms.{i}.weight must be a finite number >= 0, got {term.weight}")
    names = [term.name or term.type for term in cfg.loss.terms]
    need(len(set(names)) == len(names), f"loss.terms have duplicate names {names}; set "
         "`name:` to tell them apart")
    need(t.grad_clip is None or t.grad_clip > 0, "train.grad_clip must be > 0 or null")
    need(t.ema_decay is None or 0.0 < t.ema_decay < 1.0, "train.ema_decay must be in (0, 1)")
    need(t.accumulate >= 1, "train.accumulate must be >= 1")
    need(t.checkpoint_every >= 1, "train.checkpoint_every must be >= 1")
    need(t.keep_last >= 1, "train.keep_last must be >= 1")
    need(t.log_every >= 1, "train.log_every must be >= 1")
    need(t.max_nonfinite >= 1, "train.max_nonfinite must be >= 1")
    need(t.threads is None or t.threads >= 1, "train.threads must be >= 1 or null")
    need(t.stop_at is None or t.stop_at >= 1, "train.stop_at must be >= 1 or null")
    need(t.stop_after_minutes is None or t.stop_after_minutes > 0,
         "train.stop_after_minutes must be > 0 or null")
    need(bool(t.run_dir), "train.run_dir must not be empty")
    need(cfg.val.every >= 0, "val.every must be >= 0")
    need(cfg.val.max_pairs is None or cfg.val.max_pairs >= 1, "val.max_pairs must be >= 1")


def config_from_dict(raw: dict[str, Any] | None) -> TrainConfig:
    """Validate a nested mapping and build a :class:`TrainConfig` (missing keys: defaults)."""
    cfg = _build(TrainConfig, dict(raw or {}), "")
    _check(cfg)
    return cfg


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved config as plain YAML-able data (tuples become lists)."""
    result: dict[str, Any] = _plain(cfg)
    return result


def dump_config(cfg: TrainConfig) -> str:
    """YAML text of the resolved config; ``load_config`` of it gives back ``cfg``."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)


def _set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise InputError(f"override {dotted}: {'.'.join(parts[:i])} has no item {part}")
            idx = int(part)
            if last:
                node[idx] = value
            else:
                if node[idx] is None:
                    node[idx] = {}
                node = node[idx]
        else:
            if last:
                node[part] = value
            else:
                nxt = node.get(part)
                if nxt is None:
                    nxt = node[part] = {}
                if not isinstance(nxt, (dict, list)):
                    raise InputError(f"override {dotted}: {'.'.join(parts[:i + 1])} is not a "
                                     "section")
                node = nxt


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``key.path=value`` strings (values parsed as YAML scalars/flow) to a raw mapping."""
    import copy

    out = copy.deepcopy(raw)
    defaults = config_to_dict(TrainConfig())
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=1e-3")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise InputError(f"override {key}: cannot parse value {text!r} "
                             f"({exc.__class__.__name__})"
                             ) from None
        # Materialise list sections from the defaults so that `loss.terms.0.weight=2` works.
        head = key.split(".")[0]
        if "." in key and head in defaults and head not in out:
            out[head] = {}
        node_key = key.split(".")
        if len(node_key) >= 3 and node_key[2].isdigit():
            sec = out.setdefault(node_key[0], {})
            if isinstance(sec, dict) and node_key[1] not in sec:
                default_sec = defaults.get(node_key[0], {})
                if isinstance(default_sec, dict) and node_key[1] in default_sec:
                    sec[node_key[1]] = copy.deepcopy(default_sec[node_key[1]])
        _set_path(out, key, value)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from a file (errors as one-line InputError)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: config file not found")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InputError(f"{p}: not valid YAML{where}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"{p}: a config must be a YAML mapping of sections")
    return raw


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
                ) -> TrainConfig:
    """Load a YAML config file (or the defaults when ``path`` is None) and apply overrides.

    ``path`` may also name a shipped config (``cpu_tiny``, ``nafssr_t_x4``...) when no such file
    exists.
    """
    if path is None:
        raw: dict[str, Any] = {}
    else:
        p = Path(path)
        if not p.exists():
            shipped = shipped_config_path(str(path))
            if shipped is None:
                names = sorted(f.stem for f in (Path(__file__).resolve().parent.parent
                                                / "configs").glob("*.yaml"))
                raise InputError(f"{p}: config file not found, and no shipped config has that "
                                 f"name{_closest(p.name.removesuffix('.yaml'), set(names))}")
            p = shipped
        raw = read_yaml(p)
    return config_from_dict(apply_overrides(raw, list(overrides)))


def shipped_config_path(name: str) -> Path | None:
    """Path of a config shipped in the package (``stereosr/configs/<name>.yaml``) or None."""
    stem = name.removesuffix(".yaml")
    if "/" in stem or "\\" in stem:
        return None
    candidate = Path(__file__).resolve().parent.parent / "configs" / f"{stem}.yaml"
    return candidate if candidate.is_file() else None


def diff_configs(a: TrainConfig, b: TrainConfig) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    out: list[str] = []

    def walk(x: Any, y: Any, prefix: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{prefix}.{k}" if prefix else k)
        elif x != y:
            out.append(prefix)

    walk(config_to_dict(a), config_to_dict(b), "")
    return out
