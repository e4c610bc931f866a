"""The training loop: NAFSSR on random stereo patches, resumable bit-for-bit.

:func:`train` runs a whole :class:`~stereosr.train.config.TrainConfig`: it checks the inputs
(data, patch size, losses) before the first step, then iterates

    lr schedule -> forward on this rank's micro-batches -> backward (DDP averages gradients)
    -> skip if the loss is not finite -> clip the gradient norm -> AdamW step -> EMA update

logging, validating and checkpointing on the way. On CPU a killed run resumed with
``resume=True`` ends with the same weights as an uninterrupted one (the data of every
iteration is a pure function of the seed and the iteration, and every RNG is checkpointed).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import InputError, StereoSRError
from ..models.nafssr import NAFSSR, NAFSSRConfig, build_nafssr
from ..runtime import (
    DistInfo,
    barrier,
    cleanup_distributed,
    gather_to_rank0,
    init_distributed,
    shard,
)
from .config import RUNTIME_ONLY_KEYS, TrainConfig, diff_configs, dump_config, load_config
from .data import PairCache, PairDatasetLike, StereoPatchDataset, collate_patches, open_pair_dataset
from .distributed import all_reduce_grads, all_reduce_mean, all_true
from .logs import RunLogger, truncate_logs
from .losses import LossContext, StudentForward, StudentOutput, TrainingLoss, build_training_loss
from .optim import ModelEMA, build_optimizer, lr_at, set_lr
from .state import (
    RunLock,
    checkpoint_path,
    latest_checkpoint,
    load_training_state,
    optimizer_from_flat,
    prune_checkpoints,
    remove_stale_temp_files,
    restore_rng,
    save_training_state,
)

__all__ = [
    "TrainResult",
    "TrainingDiverged",
    "build_model",
    "prepare_run_dir",
    "train",
    "validate",
]


class TrainingDiverged(StereoSRError):
    """Too many non-finite steps in a row, or weights that are no longer finite."""

    exit_code = 3


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    run_dir: Path
    iteration: int
    final_model: Path | None
    best_model: Path | None = None
    best_psnr: float | None = None
    skipped_nonfinite: int = 0
    interrupted: bool = False
    stop_signal: int | None = None  # the signal that stopped an interrupted run
    last_losses: dict[str, float] = field(default_factory=dict)
    weights: dict[str, Tensor] = field(default_factory=dict)  # final (exported) weights
    paused: bool = False  # stopped at train.stop_at, resumable


def build_model(cfg: TrainConfig) -> NAFSSR:
    """The NAFSSR of ``cfg.model`` (random init from torch's RNG, or ``model.init`` weights)."""
    m = cfg.model
    if m.variant == "custom":
        assert m.width is not None and m.num_blocks is not None  # checked with the config
        model = NAFSSR(NAFSSRConfig(width=m.width, num_blocks=m.num_blocks, scale=m.scale,
                                    drop_path=m.drop_path or 0.0))
    else:
        model = build_nafssr(m.variant, m.scale, width=m.width, num_blocks=m.num_blocks,
                             drop_path=m.drop_path)
    if m.init:
        from ..errors import StereoSRError
        from ..models.checkpoint import load_model
        from .losses import earlier_stage_hint

        try:
            src = load_model(m.init, device="cpu", tlc=False)
        except StereoSRError as exc:
            raise type(exc)(f"model.init: {exc}{earlier_stage_hint(m.init)}") from None
        if src.config.scale != m.scale:
            raise InputError(f"model.init {m.init}: checkpoint is x{src.config.scale}, the config "
                             f"trains x{m.scale}")
        try:
            model.load_state_dict(src.state_dict(), strict=True)
        except RuntimeError:
            raise InputError(f"model.init {m.init}: width/blocks differ from the configured "
                             f"model (width {src.config.width}, {src.config.num_blocks} blocks)"
                             ) from None
    return model


def prepare_run_dir(cfg: TrainConfig, resume: bool) -> tuple[Path, Path | None]:
    """Check the run folder; return (run_dir, checkpoint to resume from or None).

    A folder that already holds checkpoints is only reused with ``resume`` (and then with the
    same config, up to :data:`RUNTIME_ONLY_KEYS`), so a run never overwrites another.
    """
    run_dir = Path(cfg.train.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"{run_dir}: train.run_dir exists and is not a folder")
    ckpt = latest_checkpoint(run_dir)
    saved = run_dir / "config.yaml"
    if not resume:
        if ckpt is not None or (run_dir / "model_final.safetensors").exists():
            raise InputError(f"{run_dir}: already holds a run; pass resume=True to continue it or "
                             "set train.run_dir to a new folder")
        return run_dir, None
    if saved.is_file():
        old = load_config(saved)
        changed = [k for k in diff_configs(old, cfg) if k not in RUNTIME_ONLY_KEYS]
        if changed:
            raise InputError(f"{run_dir}: resume=True with a different config ({', '.join(changed)} "
                             "changed); use the run's config.yaml or a new run_dir")
    return run_dir, ckpt


def _threads(cfg: TrainConfig, info: DistInfo) -> None:
    if cfg.train.threads is not None:
        n = cfg.train.threads
    else:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(info.world_size)))
        n = max(1, (os.cpu_count() or 1) // max(1, local_world))
    torch.set_num_threads(n)


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _load_cache(dataset: PairDatasetLike, cfg: TrainConfig, max_pairs: int | None,
                info: DistInfo, what: str) -> PairCache:
    bar = None
    if info.is_main and cfg.train.progress:
        from tqdm import tqdm

        bar = tqdm(desc=f"loading {what} pairs", unit="pair", leave=False, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        return PairCache.from_dataset(dataset, max_pairs=max_pairs, dtype=cfg.data.cache_dtype,
                                      threads=max(1, torch.get_num_threads()),
                                      progress=progress)
    finally:
        if bar is not None:
            bar.close()


def _batches(loader: torch.utils.data.DataLoader, device: torch.device,
             channels_last: bool) -> Iterator[dict[str, Tensor]]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for batch in loader:
        yield {k: v.to(device, non_blocking=True, memory_format=fmt) for k, v in batch.items()}


def _autocast(cfg: TrainConfig, device: torch.device) -> Any:
    if cfg.train.amp == "none":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if cfg.train.amp == "bf16" else torch.float16
    if device.type == "cpu" and dtype is torch.float16:
        raise InputError("train.amp 'fp16' needs a GPU; use 'bf16' or 'none' on CPU")
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def validate(model: NAFSSR, pairs: list[Any], device: torch.device, *,
             tlc_size: tuple[int, int] | None) -> list[tuple[str, float, float]]:
    """(name, PSNR in dB, SSIM) of each cached pair under the stereo protocol
    (:data:`~stereosr.metrics.protocol.STEREO`: mean of left and right views, 8-bit RGB, no
    border crop, 7x7 uniform-window SSIM), scored by
    :func:`~stereosr.metrics.protocol.score_pair`."""
    from ..metrics.protocol import STEREO, score_pair

    net = copy.deepcopy(model).to(device).eval()
    if tlc_size is not None:
        from ..models.tlc import enable_tlc

        enable_tlc(net, tlc_size)
    out = []
    def to_batch(a: np.ndarray, denom: float) -> torch.Tensor:
        """(H, W, 3) cached view -> (1, 3, H, W) float32 in [0, 1] on ``device``."""
        x = np.asarray(a, dtype=np.float32) / np.float32(denom)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(device)

    for p in pairs:
        lr_l, lr_r, hr_l, hr_r = p.sample()
        sr_l, sr_r = net(to_batch(lr_l, p.denom), to_batch(lr_r, p.denom))
        scores = score_pair(sr_l[0].float().clamp(0, 1).cpu(), sr_r[0].float().clamp(0, 1).cpu(),
                            hr_l, hr_r, (STEREO,))[STEREO.name]
        out.append((p.name, scores["psnr"], scores["ssim"]))
    return out


def _ignore_interrupts(worker_id: int) -> None:
    """Data workers leave Ctrl-C to the main process, which checkpoints and stops cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _StopFlag:
    """Set by SIGINT/SIGTERM: the loop checkpoints and stops at the next iteration boundary."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.signal(s, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # second signal: give up at once
            raise KeyboardInterrupt
        self.signum = signum

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()


def train(cfg: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Run (or resume) training as configured. Returns what was produced.

    Raises :class:`~stereosr.errors.InputError` for bad data/config before the first step and
    :class:`TrainingDiverged` after ``train.max_nonfinite`` non-finite steps (loss or gradient
    norm) in a row, or when the weights themselves stop being finite (nothing non-finite is
    ever written); :class:`~stereosr.errors.StereoSRError` when the disk fills up (the files
    written so far stay whole).
    """
    info = init_distributed(cfg.distributed.backend, cfg.train.device, cfg.distributed.timeout_s)
    try:
        return _train(cfg, info, resume)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = exc.filename or cfg.train.run_dir
        raise StereoSRError(f"{where}: no space left on the device while writing the run; "
                            "free some space, then resume the run from its last checkpoint"
                            ) from None
    finally:
        cleanup_distributed(info)


@dataclass
class _Run:
    """What the pieces of one run share: its inputs, the trained state and the counters that
    a checkpoint saves (``iteration``, non-finite steps, best validation score)."""

    cfg: TrainConfig
    info: DistInfo
    run_dir: Path
    model: NAFSSR
    dataset: StereoPatchDataset
    val_pairs: list[Any]
    loss_fn: TrainingLoss
    optimizer: torch.optim.Optimizer
    ema: ModelEMA | None
    scaler: torch.amp.GradScaler
    counters: dict[str, Any] = field(default_factory=lambda: {
        "iteration": 0, "skipped_nonfinite": 0, "consecutive_nonfinite": 0,
        "best_psnr": None, "best_iter": None})
    net: nn.Module | None = None  # the forward the step runs (DDP-wrapped when distributed)
    forward_loss: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None
    logger: RunLogger | None = None

    @property
    def uses_ema(self) -> bool:
        """Whether validation and export use the EMA weights."""
        return self.ema is not None and self.cfg.val.use_ema


# ---- setup: every input checked before the first step ------------------------------------

def _setup(cfg: TrainConfig, info: DistInfo, run_dir: Path) -> _Run:
    """Build the model, data, loss, optimizer and EMA of a run (cheap checks first, then the
    slow data loading)."""
    d_cfg = cfg.data
    _seed_everything(cfg.train.seed)
    model = build_model(cfg)
    # Every loss check (options, teachers, weight files and their checksums, a quality term
    # without a fidelity term) before the data is even listed; only KLT statistics fitted on
    # training patches wait for the data.
    loss_fn = build_training_loss(
        cfg.loss.terms, LossContext(scale=cfg.model.scale, device=info.device,
                                    student_width=model.config.width, run_dir=str(run_dir),
                                    write_files=info.is_main),
        allow_quality_only=cfg.loss.allow_quality_only)
    train_ds = open_pair_dataset(d_cfg.train_root, cfg.model.scale, d_cfg.layout)
    val_ds = open_pair_dataset(cfg.val.root, cfg.model.scale, cfg.val.layout) \
        if cfg.val.root else None
    cache = _load_cache(train_ds, cfg, d_cfg.max_pairs, info, "training")
    dataset = StereoPatchDataset(cache, d_cfg.lr_patch, cfg.model.scale, seed=cfg.train.seed,
                                 hflip=d_cfg.hflip, vflip=d_cfg.vflip, rgb_perm=d_cfg.rgb_perm,
                                 patch_tries=d_cfg.patch_tries, view_gain=d_cfg.view_gain,
                                 view_shift=d_cfg.view_shift,
                                 view_shift_prob=d_cfg.view_shift_prob)
    val_pairs: list[Any] = []
    if val_ds is not None:
        val_pairs = _load_cache(val_ds, cfg, cfg.val.max_pairs, info, "validation").pairs

    def hr_patches(n: int) -> Tensor:
        """(n, 3, H, W) HR patches of the training pairs (left and right views alternate)."""
        got: list[Tensor] = []
        g = 0
        while len(got) < n:
            item = dataset[10**12 + g]  # an index range training never reaches
            got.extend([item["hr_left"], item["hr_right"]])
            g += 1
        return torch.stack(got[:n])

    loss_fn.fit_pending(hr_patches, info.device)
    model.to(info.device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = build_optimizer(list(model.parameters()) + loss_fn.trainable_parameters(),
                                cfg.optim)
    ema = ModelEMA(model, cfg.train.ema_decay) if cfg.train.ema_decay else None
    scaler = torch.amp.GradScaler(info.device.type, enabled=(cfg.train.amp == "fp16"))
    return _Run(cfg, info, run_dir, model, dataset, val_pairs, loss_fn, optimizer, ema, scaler)


# ---- restore: continue a checkpoint, or start the per-rank random streams ----------------

def _restore(run: _Run, ckpt: Path | None) -> None:
    """Load model, EMA, optimizer, loss statistics, scaler, counters and RNGs from ``ckpt``."""
    info = run.info
    if ckpt is None:
        # Ranks share the model init (seeded in setup, also broadcast by DDP) but draw their
        # own drop-path decisions from here on.
        torch.manual_seed(run.cfg.train.seed + 1_000_003 * info.rank)
        return
    state = load_training_state(ckpt)
    run.model.load_state_dict(state.params, strict=True)
    if run.ema is not None:
        if not state.params_ema:
            raise InputError(f"{ckpt}: has no EMA weights but train.ema_decay is set")
        run.ema.load_state_dict(state.params_ema)
        # Checkpoints of the EMA without warm-up hold no count: treat them as long past it.
        run.ema.num_updates = int(state.meta.get(
            "ema_updates", state.meta["counters"]["iteration"]))
    optimizer_from_flat(run.optimizer, state.optim, state.meta["optimizer"])
    run.loss_fn.load_resumable_state(state.loss)
    if state.meta.get("scaler"):
        run.scaler.load_state_dict(state.meta["scaler"])
    run.counters.update(state.meta["counters"])
    restore_rng(state.rng, state.meta["rng"])
    if info.distributed:
        # Per-rank RNG (drop path) continues from each rank's own stream.
        rank_rng = state.meta.get("rank_torch_rng", {}).get(str(info.rank))
        if rank_rng is not None:
            torch.set_rng_state(torch.tensor(rank_rng, dtype=torch.uint8))


def _open_logs(run: _Run) -> None:
    """Write the run's config.yaml, cut log records newer than the restored iteration, remove
    temporary files a killed run left, and open the logger (rank 0 only writes)."""
    if run.info.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        from ..io import atomic_write_bytes

        atomic_write_bytes(run.run_dir / "config.yaml", dump_config(run.cfg).encode(),
                           overwrite=True)
        # Records newer than the restored iteration (or all of them, when a run killed
        # before its first checkpoint starts again) would otherwise appear twice.
        truncate_logs(run.run_dir, int(run.counters["iteration"]))
        remove_stale_temp_files(run.run_dir)
    barrier()
    run.logger = RunLogger(run.run_dir, enabled=run.info.is_main,
                           tensorboard=run.cfg.train.tensorboard)


def _wrap_model(run: _Run) -> None:
    """The student forward (with the features the losses need), under DDP when distributed."""
    net: nn.Module = StudentForward(run.model, run.loss_fn.feature_layers)
    if run.info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        dev = run.info.device
        net = DDP(net, device_ids=[dev.index] if dev.type == "cuda" else None,
                  find_unused_parameters=run.model.config.drop_path > 0)
    run.net = net
    cfg, device, loss_fn = run.cfg, run.info.device, run.loss_fn

    def forward_loss(batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Student forward (under autocast when ``train.amp``) and the loss parts."""
        with _autocast(cfg, device):
            sr_l, sr_r, feats = net(batch["lr_left"], batch["lr_right"])
        return loss_fn(StudentOutput(sr_l.float(), sr_r.float(), feats), batch)

    # train.compile: one torch.compile of forward and loss (the model switches to its
    # graph-friendly code: SDPA attention over whole images, no in-place updates).
    # "reduce-overhead" adds CUDA graphs: every step has the same shapes.
    mode = cfg.train.compile_mode
    run.forward_loss = (torch.compile(forward_loss, **({} if mode == "default" else
                                                       {"mode": mode}))
                        if cfg.train.compile else forward_loss)


def _batch_stream(run: _Run, per_rank: int) -> Iterator[dict[str, Tensor]]:
    """This rank's micro-batches from the run's current iteration on (already on device)."""
    from ..data.sampler import StepBatchSampler

    cfg, info = run.cfg, run.info
    workers = cfg.data.num_workers
    sampler = StepBatchSampler(per_rank, world_size=info.world_size, rank=info.rank,
                               accumulate=cfg.train.accumulate,
                               start_iter=int(run.counters["iteration"]),
                               total_iters=cfg.schedule.total_iters)
    loader = torch.utils.data.DataLoader(
        run.dataset, batch_sampler=sampler, num_workers=workers,
        collate_fn=collate_patches, pin_memory=info.device.type == "cuda",
        persistent_workers=False, generator=torch.Generator().manual_seed(cfg.train.seed),
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_ignore_interrupts if workers > 0 else None)
    return _batches(loader, info.device, cfg.train.channels_last)


# ---- checkpoints, export and validation ---------------------------------------------------

def _save_checkpoint(run: _Run, iteration: int) -> Path | None:
    """Write the resumable state at ``iteration`` (rank 0; every rank joins the RNG gather)."""
    info = run.info
    _check_finite_weights(run, iteration)
    meta: dict[str, Any] = {"counters": {**run.counters, "iteration": iteration},
                            "scaler": run.scaler.state_dict() if run.scaler.is_enabled()
                            else None}
    if run.ema is not None:
        meta["ema_updates"] = run.ema.num_updates
    if info.distributed:
        from torch import distributed as tdist

        states: list[Any] = [None] * info.world_size
        tdist.all_gather_object(states, torch.get_rng_state().tolist())
        meta["rank_torch_rng"] = {str(r): s for r, s in enumerate(states)}
    if not info.is_main:
        return None
    path = save_training_state(
        checkpoint_path(run.run_dir, iteration), params=run.model.state_dict(),
        params_ema=run.ema.state_dict() if run.ema is not None else None,
        optimizer=run.optimizer, loss_state=run.loss_fn.resumable_state(), meta=meta)
    prune_checkpoints(run.run_dir, run.cfg.train.keep_last)
    return path


#: What to do after a run diverged: resuming keeps the run's config (and so its learning
#: rate), and a resumed run repeats the original bit for bit, so it would diverge again.
_AFTER_DIVERGING = ("lower optim.lr (or check the data) and start again with a new "
                    "train.run_dir; resuming keeps this run's config and would diverge again")


def _check_finite_weights(run: _Run, iteration: int) -> None:
    """Raise :class:`TrainingDiverged` (writing nothing) when a weight of the model or of its
    EMA is NaN or infinite."""
    groups = [("weights", run.model.state_dict())]
    if run.ema is not None:
        groups.append(("EMA weights", run.ema.state_dict()))
    for what, sd in groups:
        bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise TrainingDiverged(
                f"{len(bad)} {what} are no longer finite at iteration {iteration} (e.g. "
                f"{bad[0]}); nothing was written; {_AFTER_DIVERGING}")


def _export_weights(run: _Run) -> dict[str, Tensor]:
    """The weights a run exports: the EMA copy when kept and used, else the raw weights."""
    if run.uses_ema:
        assert run.ema is not None
        return {k: v.clone() for k, v in run.ema.state_dict().items()}
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def _export(run: _Run, path: Path, iteration: int, extra: dict[str, Any]) -> Path:
    """Save the exported weights as an inference checkpoint (no drop path) at ``path``."""
    from ..models.checkpoint import save_model

    _check_finite_weights(run, iteration)
    c = run.model.config
    net = NAFSSR(dataclasses.replace(c, drop_path=0.0))
    net.load_state_dict(_export_weights(run))
    meta = {"trained_iterations": iteration, "train_config": run.cfg.name,
            "weights": "ema" if run.uses_ema else "params", **extra}
    return save_model(net, path, meta, overwrite=True, train_size=run.cfg.data.lr_patch)


def _validate_and_keep_best(run: _Run, iteration: int) -> dict[str, float] | None:
    """Score the exported weights on the validation pairs (sharded over ranks), log the mean
    and export ``model_best`` when it improves. Returns the mean scores on rank 0."""
    if not run.val_pairs:
        return None
    info = run.info
    eval_model = run.model
    if run.uses_ema:
        eval_model = copy.deepcopy(run.model)
        eval_model.load_state_dict(_export_weights(run))
    mine = validate(eval_model, shard(run.val_pairs, info.rank, info.world_size), info.device,
                    tlc_size=run.cfg.data.lr_patch if run.cfg.val.tlc else None)
    allres = gather_to_rank0(mine)
    if allres is None:
        return None
    scores = {"psnr": float(np.mean([r[1] for r in allres])),
              "ssim": float(np.mean([r[2] for r in allres])), "pairs": len(allres)}
    assert run.logger is not None
    run.logger.log("val", {"iter": iteration, **scores})
    best = run.counters["best_psnr"]
    if best is None or scores["psnr"] > best:
        run.counters["best_psnr"], run.counters["best_iter"] = scores["psnr"], iteration
        _export(run, run.run_dir / "model_best.safetensors", iteration,
                {"val_psnr": scores["psnr"], "val_ssim": scores["ssim"]})
    return scores


# ---- one optimizer step --------------------------------------------------------------------

@dataclass
class _Step:
    lr: float
    finite: bool
    parts: dict[str, Tensor]  # loss terms (and "total") averaged over the micro-batches
    grad_norm: Tensor


def _step(run: _Run, batches: Iterator[dict[str, Tensor]], iteration: int) -> _Step:
    """One optimizer step at (0-based) ``iteration``: lr schedule, forward/backward over the
    micro-batches, clip, AdamW and EMA update. A step whose loss is not finite on any rank
    leaves the weights unchanged."""
    cfg, info = run.cfg, run.info
    t_cfg = cfg.train
    assert run.net is not None
    lr = lr_at(iteration, cfg.optim.lr, cfg.schedule)
    set_lr(run.optimizer, lr)
    run.optimizer.zero_grad(set_to_none=True)
    finite = True
    parts_sum: dict[str, Tensor] = {}
    for micro in range(t_cfg.accumulate):
        batch = next(batches)
        sync = micro == t_cfg.accumulate - 1 or not info.distributed
        ctx = contextlib.nullcontext() if sync else run.net.no_sync()  # type: ignore[operator]
        with ctx:
            assert run.forward_loss is not None
            parts = run.forward_loss(batch)
            total_loss = parts["total"] / t_cfg.accumulate
            finite = finite and bool(torch.isfinite(total_loss).item())
            run.scaler.scale(total_loss).backward()
        for k, v in parts.items():
            share = v.detach() / t_cfg.accumulate
            parts_sum[k] = parts_sum[k] + share if k in parts_sum else share
    loss_params = run.loss_fn.trainable_parameters()
    if info.distributed and loss_params:
        # Loss-side parameters (feature adapters) live outside DDP: average by hand.
        all_reduce_grads(loss_params)
    run.scaler.unscale_(run.optimizer)
    clip = t_cfg.grad_clip if t_cfg.grad_clip is not None else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(list(run.model.parameters()) + loss_params, clip)
    if not run.scaler.is_enabled():
        # A finite loss with an infinite or NaN gradient norm is divergence as well (with
        # fp16 the grad scaler skips such steps itself and lowers its scale).
        finite = finite and bool(torch.isfinite(grad_norm).item())
    finite = all_true(finite, info.device)
    if finite:
        run.scaler.step(run.optimizer)
        run.scaler.update()
        if run.ema is not None:
            run.ema.update(run.model)
    else:
        run.optimizer.zero_grad(set_to_none=True)
        if run.scaler.is_enabled():
            run.scaler.update(run.scaler.get_scale() / 2)
    return _Step(lr, finite, parts_sum, grad_norm)


def _count_nonfinite(run: _Run, step: _Step, iteration: int) -> None:
    """Count a skipped step (non-finite loss or gradient norm); after ``train.max_nonfinite``
    in a row, checkpoint and raise :class:`TrainingDiverged`."""
    c = run.counters
    if step.finite:
        c["consecutive_nonfinite"] = 0
        return
    c["skipped_nonfinite"] += 1
    c["consecutive_nonfinite"] += 1
    limit = run.cfg.train.max_nonfinite
    if c["consecutive_nonfinite"] >= limit:
        path = _save_checkpoint(run, iteration)
        assert run.logger is not None
        run.logger.log("event", {"iter": iteration, "event": "diverged"})
        raise TrainingDiverged(
            f"loss or gradient was not finite for {limit} iterations in a row (at iteration "
            f"{iteration}); "
            f"state saved to {path or run.run_dir}; {_AFTER_DIVERGING}")


# ---- progress log ----------------------------------------------------------------------------

class _TrainLog:
    """Averages the finite steps' loss parts and gradient norms over ``train.log_every``
    iterations and writes one ``train`` record (mean over ranks) per window."""

    def __init__(self, run: _Run, bar: Any, start: int) -> None:
        self.run, self.bar = run, bar
        self.last_iter = start  # iteration of the previous record (or of the restored state)
        self.sums: dict[str, Tensor] = {}
        self.n = 0
        self.t0 = time.perf_counter()
        self.last: dict[str, float] = {}

    def add(self, step: _Step) -> None:
        if not step.finite:
            return
        for k, v in {**step.parts, "grad_norm": step.grad_norm.detach()}.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.n += 1

    def maybe_write(self, iteration: int, lr: float) -> None:
        """Write the window's record at every ``log_every``-th iteration and at the end."""
        cfg = self.run.cfg
        every, total = cfg.train.log_every, cfg.schedule.total_iters
        if iteration % every and iteration != total:
            return
        dev = self.run.info.device
        keys = sorted(self.sums)
        vec = torch.stack([self.sums[k].to(dev, torch.float32) for k in keys]) / max(1, self.n) \
            if keys else None
        if vec is not None:
            vec = all_reduce_mean(vec)
        now = time.perf_counter()
        rate = (iteration - self.last_iter) / max(now - self.t0, 1e-9)
        self.t0, self.last_iter = now, iteration
        self.last = {k: float(v) for k, v in zip(keys, vec.tolist())} if vec is not None else {}
        assert self.run.logger is not None
        self.run.logger.log("train", {
            "iter": iteration, "lr": lr, "it_s": rate, "samples_s": rate * cfg.data.batch_size,
            "skipped_nonfinite": self.run.counters["skipped_nonfinite"], **self.last})
        if self.bar is not None:
            shown = {k: v for k, v in self.last.items() if k != "grad_norm"}
            if len(shown) == 2:  # one term: its value is the total
                shown.pop("total", None)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
        self.sums, self.n = {}, 0


# ---- the run ---------------------------------------------------------------------------------

def _train(cfg: TrainConfig, info: DistInfo, resume: bool) -> TrainResult:
    t_cfg = cfg.train
    _threads(cfg, info)
    per_step = info.world_size * t_cfg.accumulate
    if cfg.data.batch_size % per_step:
        raise InputError(f"data.batch_size {cfg.data.batch_size} is not divisible by processes "
                         f"x train.accumulate = {info.world_size} x {t_cfg.accumulate}")
    run_dir, ckpt = prepare_run_dir(cfg, resume)
    with RunLock(run_dir, enabled=info.is_main):
        return _run(cfg, info, run_dir, ckpt)


def _run(cfg: TrainConfig, info: DistInfo, run_dir: Path, ckpt: Path | None) -> TrainResult:
    """Set up, restore and train (the run folder is locked)."""
    t_cfg = cfg.train
    per_step = info.world_size * t_cfg.accumulate
    run = _setup(cfg, info, run_dir)
    _restore(run, ckpt)
    _open_logs(run)
    _wrap_model(run)
    batches = _batch_stream(run, cfg.data.batch_size // per_step)

    start, total = int(run.counters["iteration"]), cfg.schedule.total_iters
    bar = None
    if info.is_main and t_cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, desc=cfg.name, unit="it", dynamic_ncols=True,
                   smoothing=0.05)
    log = _TrainLog(run, bar, start)
    stop = _StopFlag()
    if not info.distributed:
        stop.install()
    assert run.net is not None
    run.net.train()
    iteration = start
    stopped_early = interrupted = False
    deadline = None if t_cfg.stop_after_minutes is None else \
        time.monotonic() + 60.0 * t_cfg.stop_after_minutes
    try:
        while iteration < total:
            step = _step(run, batches, iteration)
            iteration += 1
            _count_nonfinite(run, step, iteration)
            log.add(step)
            log.maybe_write(iteration, step.lr)
            if bar is not None:
                bar.update(1)
            if cfg.val.every > 0 and iteration % cfg.val.every == 0 and iteration < total:
                _validate_and_keep_best(run, iteration)
            paused = t_cfg.stop_at is not None and t_cfg.stop_at <= iteration < total
            if deadline is not None and iteration < total and all_true(
                    time.monotonic() >= deadline, info.device):
                # A timed session ends with a score and model_best, ready for the next one.
                if cfg.val.every == 0 or iteration % cfg.val.every:
                    _validate_and_keep_best(run, iteration)
                paused = True
            if stop.signum is not None or paused:
                _save_checkpoint(run, iteration)
                interrupted = stop.signum is not None
                stopped_early = True
                break
            if iteration % t_cfg.checkpoint_every == 0 or iteration == total:
                _save_checkpoint(run, iteration)
    finally:
        stop.restore()
        if bar is not None:
            bar.close()
    result = _finish(run, iteration, log.last, stopped_early, interrupted)
    if interrupted:
        result.stop_signal = stop.signum
    return result


def _finish(run: _Run, iteration: int, last: dict[str, float], stopped_early: bool,
            interrupted: bool) -> TrainResult:
    """Final validation and ``model_final`` export of a completed run; the result."""
    result = TrainResult(run_dir=run.run_dir, iteration=iteration, final_model=None,
                         skipped_nonfinite=int(run.counters["skipped_nonfinite"]),
                         interrupted=interrupted, last_losses=last,
                         weights=_export_weights(run), paused=stopped_early and not interrupted)
    if not stopped_early:
        if run.val_pairs:
            _validate_and_keep_best(run, iteration)
        if run.info.is_main:
            result.final_model = _export(run, run.run_dir / "model_final.safetensors",
                                         iteration, {})
    if (run.run_dir / "model_best.safetensors").exists():
        result.best_model = run.run_dir / "model_best.safetensors"
        result.best_psnr = run.counters["best_psnr"]
    assert run.logger is not None
    run.logger.close()
    barrier()
    return result
