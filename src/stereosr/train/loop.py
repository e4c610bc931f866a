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

import copy
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import InputError, StereoSRError
from ..models.nafssr import NAFSSR, build_nafssr
from .config import RUNTIME_ONLY_KEYS, TrainConfig, diff_configs, dump_config, load_config
from .data import PairCache, PairDatasetLike, StereoPatchDataset, collate_patches, open_pair_dataset
from .distributed import (
    DistInfo,
    all_reduce_grads,
    all_reduce_mean,
    all_true,
    barrier,
    cleanup_distributed,
    gather_to_rank0,
    init_distributed,
    shard,
)
from .logs import RunLogger, truncate_logs
from .losses import LossContext, StudentForward, StudentOutput, TrainingLoss, build_training_loss
from .optim import ModelEMA, build_optimizer, lr_at, set_lr
from .state import (
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_training_state,
    prune_checkpoints,
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
    """Too many non-finite losses in a row."""

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
    last_losses: dict[str, float] = field(default_factory=dict)
    weights: dict[str, Tensor] = field(default_factory=dict)  # final (exported) weights
    paused: bool = False  # stopped at train.stop_at, resumable


def build_model(cfg: TrainConfig) -> NAFSSR:
    """The NAFSSR of ``cfg.model`` (random init from torch's RNG, or ``model.init`` weights)."""
    m = cfg.model
    model = build_nafssr(m.variant, m.scale, width=m.width, num_blocks=m.num_blocks,
                         drop_path=m.drop_path)
    if m.init:
        from ..models.checkpoint import load_model

        src = load_model(m.init, device="cpu", tlc=False)
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
            raise InputError(f"{run_dir}: already holds a run; pass --resume to continue it or "
                             "set train.run_dir to a new folder")
        return run_dir, None
    if saved.is_file():
        old = load_config(saved)
        changed = [k for k in diff_configs(old, cfg) if k not in RUNTIME_ONLY_KEYS]
        if changed:
            raise InputError(f"{run_dir}: --resume with a different config ({', '.join(changed)} "
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


def _check_teachers(cfg: TrainConfig) -> None:
    """Fail fast (before reading the data) on missing or wrong-scale distillation teachers."""
    from ..models.checkpoint import config_from_state_dict, read_checkpoint, unwrap_state_dict

    for term in cfg.loss.terms:
        if term.type.lower() != "distill":
            continue
        paths = term.options.get("teachers")
        for k, path in enumerate([paths] if isinstance(paths, str) else list(paths or [])):
            if not isinstance(path, str):
                continue  # reported by the loss builder
            p = Path(path)
            if not p.exists():
                from ..models.registry import resolve_name

                if resolve_name(path) is None:
                    raise InputError(f"distillation teacher {k}: {path}: no such checkpoint")
                continue
            scale = config_from_state_dict(unwrap_state_dict(read_checkpoint(p)[0])).scale
            if scale != cfg.model.scale:
                raise InputError(f"distillation teacher {k} ({path}) upscales x{scale} but the "
                                 f"model trains x{cfg.model.scale}; teachers must have the same "
                                 "scale")


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


def _to_uint8(x: Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded like saving a PNG."""
    arr = x.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return arr.permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def validate(model: NAFSSR, pairs: list[Any], device: torch.device, *,
             tlc_size: tuple[int, int] | None) -> list[tuple[str, float, float]]:
    """(name, PSNR, SSIM) of each cached pair, each the mean of left and right views
    (uint8 RGB, no border crop, SSIM with the 7x7 uniform window: the stereo SR protocol)."""
    from ..metrics.psnr import psnr
    from ..metrics.ssim import ssim

    net = copy.deepcopy(model).to(device).eval()
    if tlc_size is not None:
        from ..models.tlc import enable_tlc

        enable_tlc(net, tlc_size)
    out = []
    for p in pairs:
        lr_l, lr_r, hr_l, hr_r = (np.asarray(a, dtype=np.float32) / np.float32(p.denom)
                                  for a in p.sample())
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]
        sr_l, sr_r = net(to_t(lr_l).to(device), to_t(lr_r).to(device))
        scores_p, scores_s = [], []
        for sr, hr in ((sr_l[0], hr_l), (sr_r[0], hr_r)):
            sr8 = _to_uint8(sr)
            hr8 = np.clip(np.round(hr * 255.0), 0, 255).astype(np.uint8)
            scores_p.append(float(psnr(sr8, hr8)))
            scores_s.append(float(ssim(sr8, hr8)))
        out.append((p.name, sum(scores_p) / 2, sum(scores_s) / 2))
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
    :class:`TrainingDiverged` after ``train.max_nonfinite`` non-finite losses in a row.
    """
    info = init_distributed(cfg.distributed.backend, cfg.train.device, cfg.distributed.timeout_s)
    try:
        return _train(cfg, info, resume)
    finally:
        cleanup_distributed(info)


def _train(cfg: TrainConfig, info: DistInfo, resume: bool) -> TrainResult:
    t_cfg, d_cfg = cfg.train, cfg.data
    dev = info.device
    _threads(cfg, info)
    world, rank = info.world_size, info.rank
    per_step = world * t_cfg.accumulate
    if d_cfg.batch_size % per_step:
        raise InputError(f"data.batch_size {d_cfg.batch_size} is not divisible by processes x "
                         f"train.accumulate = {world} x {t_cfg.accumulate}")
    per_rank = d_cfg.batch_size // per_step
    run_dir, ckpt = prepare_run_dir(cfg, resume)

    # ---- inputs, all checked before the first step --------------------------------------
    _seed_everything(t_cfg.seed)
    model = build_model(cfg)
    # Cheap checks first (folders, pairs, teachers), then the slow data loading.
    train_ds = open_pair_dataset(d_cfg.train_root, cfg.model.scale, d_cfg.layout)
    val_ds = open_pair_dataset(cfg.val.root, cfg.model.scale, cfg.val.layout) \
        if cfg.val.root else None
    _check_teachers(cfg)
    cache = _load_cache(train_ds, cfg, d_cfg.max_pairs, info, "training")
    dataset = StereoPatchDataset(cache, d_cfg.lr_patch, cfg.model.scale, seed=t_cfg.seed,
                                 hflip=d_cfg.hflip, vflip=d_cfg.vflip, rgb_perm=d_cfg.rgb_perm)
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

    loss_fn: TrainingLoss = build_training_loss(
        cfg.loss.terms, LossContext(scale=cfg.model.scale, device=dev,
                                    student_width=model.config.width, hr_patches=hr_patches,
                                    run_dir=str(run_dir), write_files=info.is_main))

    model.to(dev)
    if t_cfg.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = build_optimizer(list(model.parameters()) + loss_fn.trainable_parameters(),
                                cfg.optim)
    ema = ModelEMA(model, t_cfg.ema_decay) if t_cfg.ema_decay else None
    scaler = torch.amp.GradScaler(dev.type, enabled=(t_cfg.amp == "fp16"))

    counters: dict[str, Any] = {"iteration": 0, "skipped_nonfinite": 0, "consecutive_nonfinite": 0,
                                "best_psnr": None, "best_iter": None}
    if ckpt is not None:
        state = load_training_state(ckpt)
        model.load_state_dict(state.params, strict=True)
        if ema is not None:
            if not state.params_ema:
                raise InputError(f"{ckpt}: has no EMA weights but train.ema_decay is set")
            ema.load_state_dict(state.params_ema)
        from .state import optimizer_from_flat

        optimizer_from_flat(optimizer, state.optim, state.meta["optimizer"])
        loss_fn.load_resumable_state(state.loss)
        if state.meta.get("scaler"):
            scaler.load_state_dict(state.meta["scaler"])
        counters.update(state.meta["counters"])
        from .state import restore_rng

        restore_rng(state.rng, state.meta["rng"])
        if info.distributed:
            # Per-rank RNG (drop path) continues from each rank's own stream.
            rank_rng = state.meta.get("rank_torch_rng", {}).get(str(rank))
            if rank_rng is not None:
                torch.set_rng_state(torch.tensor(rank_rng, dtype=torch.uint8))
    else:
        # Ranks share the model init (seeded above, also broadcast by DDP) but draw their own
        # drop-path decisions from here on.
        torch.manual_seed(t_cfg.seed + 1_000_003 * rank)
    start = int(counters["iteration"])
    total = cfg.schedule.total_iters

    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        from ..io import atomic_write_bytes

        atomic_write_bytes(run_dir / "config.yaml", dump_config(cfg).encode(), overwrite=True)
        if ckpt is not None:
            truncate_logs(run_dir, start)
    barrier()
    logger = RunLogger(run_dir, enabled=info.is_main, tensorboard=t_cfg.tensorboard)

    net: nn.Module = StudentForward(model, loss_fn.feature_layers)
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        drop = cfg.model.drop_path if cfg.model.drop_path is not None else \
            {"T": 0.0, "S": 0.1, "B": 0.2, "L": 0.3}[cfg.model.variant]
        net = DDP(net, device_ids=[dev.index] if dev.type == "cuda" else None,
                  find_unused_parameters=drop > 0)

    from ..data.sampler import StepBatchSampler

    sampler = StepBatchSampler(per_rank, world_size=world, rank=rank,
                               accumulate=t_cfg.accumulate, start_iter=start, total_iters=total)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=d_cfg.num_workers,
        collate_fn=collate_patches, pin_memory=dev.type == "cuda",
        persistent_workers=False, generator=torch.Generator().manual_seed(t_cfg.seed),
        prefetch_factor=4 if d_cfg.num_workers > 0 else None,
        worker_init_fn=_ignore_interrupts if d_cfg.num_workers > 0 else None)
    batches = _batches(loader, dev, t_cfg.channels_last)

    def save_checkpoint(iteration: int) -> Path | None:
        meta: dict[str, Any] = {"counters": {**counters, "iteration": iteration},
                                "scaler": scaler.state_dict() if scaler.is_enabled() else None}
        if info.distributed:
            from torch import distributed as tdist

            own = torch.get_rng_state().tolist()
            states: list[Any] = [None] * world
            tdist.all_gather_object(states, own)
            meta["rank_torch_rng"] = {str(r): s for r, s in enumerate(states)}
        if not info.is_main:
            return None
        path = save_training_state(
            checkpoint_path(run_dir, iteration), params=model.state_dict(),
            params_ema=ema.state_dict() if ema is not None else None, optimizer=optimizer,
            loss_state=loss_fn.resumable_state(), meta=meta)
        prune_checkpoints(run_dir, t_cfg.keep_last)
        return path

    def export_weights() -> dict[str, Tensor]:
        if ema is not None and cfg.val.use_ema:
            return {k: v.clone() for k, v in ema.state_dict().items()}
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def export(path: Path, iteration: int, extra: dict[str, Any]) -> Path:
        from ..models.checkpoint import save_model

        net_copy = build_nafssr(cfg.model.variant, cfg.model.scale, width=cfg.model.width,
                                num_blocks=cfg.model.num_blocks, drop_path=0.0)
        net_copy.load_state_dict(export_weights())
        meta = {"trained_iterations": iteration, "train_config": cfg.name,
                "weights": "ema" if (ema is not None and cfg.val.use_ema) else "params", **extra}
        return save_model(net_copy, path, meta, overwrite=True,
                          train_size=cfg.data.lr_patch)

    def run_validation(iteration: int) -> dict[str, float] | None:
        """Sharded over ranks; returns mean scores on rank 0."""
        if not val_pairs:
            return None
        eval_model = model
        if ema is not None and cfg.val.use_ema:
            eval_model = copy.deepcopy(model)
            eval_model.load_state_dict(ema.state_dict())
        mine = validate(eval_model, shard(val_pairs, rank, world), dev,
                        tlc_size=d_cfg.lr_patch if cfg.val.tlc else None)
        allres = gather_to_rank0(mine)
        if allres is None:
            return None
        scores = {"psnr": float(np.mean([r[1] for r in allres])),
                  "ssim": float(np.mean([r[2] for r in allres])), "pairs": len(allres)}
        logger.log("val", {"iter": iteration, **scores})
        best = counters["best_psnr"]
        if best is None or scores["psnr"] > best:
            counters["best_psnr"], counters["best_iter"] = scores["psnr"], iteration
            export(run_dir / "model_best.safetensors", iteration,
                   {"val_psnr": scores["psnr"], "val_ssim": scores["ssim"]})
        return scores

    bar = None
    if info.is_main and t_cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, desc=cfg.name, unit="it", dynamic_ncols=True,
                   smoothing=0.05)
    stop = _StopFlag()
    if not info.distributed:
        stop.install()

    net.train()
    loss_params = loss_fn.trainable_parameters()
    params = [p for p in model.parameters()] + loss_params
    sums: dict[str, Tensor] = {}
    n_sum = 0
    t_log = time.perf_counter()
    last: dict[str, float] = {}
    iteration = start
    interrupted = False
    stopped_early = False
    try:
        while iteration < total:
            lr = lr_at(iteration, cfg.optim.lr, cfg.schedule)
            set_lr(optimizer, lr)
            optimizer.zero_grad(set_to_none=True)
            finite = True
            step_parts: dict[str, Tensor] = {}
            for micro in range(t_cfg.accumulate):
                batch = next(batches)
                sync = micro == t_cfg.accumulate - 1 or not info.distributed
                ctx = net.no_sync() if not sync else _nullcontext()  # type: ignore[operator]
                with ctx:
                    with _autocast(cfg, dev):
                        sr_l, sr_r, feats = net(batch["lr_left"], batch["lr_right"])
                    parts = loss_fn(StudentOutput(sr_l.float(), sr_r.float(), feats), batch)
                    total_loss = parts["total"] / t_cfg.accumulate
                    finite = finite and bool(torch.isfinite(total_loss).item())
                    scaler.scale(total_loss).backward()
                for k, v in parts.items():
                    share = v.detach() / t_cfg.accumulate
                    step_parts[k] = step_parts[k] + share if k in step_parts else share
            finite = all_true(finite, dev)
            if info.distributed and loss_params:
                # Loss-side parameters (feature adapters) live outside DDP: average by hand.
                all_reduce_grads(loss_params)
            scaler.unscale_(optimizer)
            clip = t_cfg.grad_clip if t_cfg.grad_clip is not None else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
            iteration += 1
            if finite:
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update(model)
                counters["consecutive_nonfinite"] = 0
            else:
                optimizer.zero_grad(set_to_none=True)
                if scaler.is_enabled():
                    scaler.update(scaler.get_scale() / 2)
                counters["skipped_nonfinite"] += 1
                counters["consecutive_nonfinite"] += 1
                if counters["consecutive_nonfinite"] >= t_cfg.max_nonfinite:
                    path = save_checkpoint(iteration)
                    logger.log("event", {"iter": iteration, "event": "diverged"})
                    raise TrainingDiverged(
                        f"loss was not finite for {t_cfg.max_nonfinite} iterations in a row (at "
                        f"iteration {iteration}); state saved to {path or run_dir}; lower "
                        "optim.lr or check the data, then --resume or restart")

            if finite:
                step_parts["grad_norm"] = grad_norm.detach()
                for k, v in step_parts.items():
                    sums[k] = sums[k] + v if k in sums else v
                n_sum += 1
            if iteration % t_cfg.log_every == 0 or iteration == total:
                keys = sorted(sums)
                vec = torch.stack([sums[k].to(dev, torch.float32) for k in keys]) / max(1, n_sum) \
                    if keys else None
                if vec is not None:
                    vec = all_reduce_mean(vec)
                now = time.perf_counter()
                steps = t_cfg.log_every if iteration % t_cfg.log_every == 0 else \
                    iteration % t_cfg.log_every
                rate = steps / max(now - t_log, 1e-9)
                t_log = now
                last = {k: float(v) for k, v in zip(keys, vec.tolist())} if vec is not None else {}
                rec = {"iter": iteration, "lr": lr, "it_s": rate,
                       "samples_s": rate * d_cfg.batch_size,
                       "skipped_nonfinite": counters["skipped_nonfinite"], **last}
                logger.log("train", rec)
                if bar is not None:
                    shown = {k: v for k, v in last.items() if k != "grad_norm"}
                    if len(shown) == 2:  # one term: its value is the total
                        shown.pop("total", None)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
                sums, n_sum = {}, 0
            if bar is not None:
                bar.update(1)

            val_due = cfg.val.every > 0 and iteration % cfg.val.every == 0
            if val_due and iteration < total:
                run_validation(iteration)
            ckpt_due = iteration % t_cfg.checkpoint_every == 0 or iteration == total
            paused = t_cfg.stop_at is not None and iteration >= t_cfg.stop_at and \
                iteration < total
            if stop.signum is not None or paused:
                save_checkpoint(iteration)
                interrupted = stop.signum is not None
                stopped_early = True
                break
            if ckpt_due:
                save_checkpoint(iteration)
    finally:
        stop.restore()
        if bar is not None:
            bar.close()

    result = TrainResult(run_dir=run_dir, iteration=iteration, final_model=None,
                         skipped_nonfinite=int(counters["skipped_nonfinite"]),
                         interrupted=interrupted, last_losses=last, weights=export_weights(),
                         paused=stopped_early and not interrupted)
    if not stopped_early:
        if val_pairs:
            run_validation(iteration)
        if info.is_main:
            result.final_model = export(run_dir / "model_final.safetensors", iteration, {})
    if (run_dir / "model_best.safetensors").exists():
        result.best_model = run_dir / "model_best.safetensors"
        result.best_psnr = counters["best_psnr"]
    logger.close()
    barrier()
    if stopped_early and info.is_main:
        print(f"stopped at iteration {iteration}; continue with --resume", file=sys.stderr)
    return result


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main_from_path(path: str, overrides: list[str], resume: bool) -> TrainResult:
    """Load a config file (with ``--set`` overrides) and train."""
    return train(load_config(path, overrides), resume=resume)


__all__ += ["list_checkpoints", "main_from_path"]
