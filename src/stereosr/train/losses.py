"""The training objective: a weighted sum of named loss terms built from the config.

Each configured term (``loss.terms`` entries: ``type``, ``weight``, ``name``, ``options``) is
wrapped so that it is called as ``term(out, batch)`` where ``out`` is the student's
:class:`StudentOutput` and ``batch`` the dict of (B, 3, h, w) ``lr_*`` and (B, 3, H, W) ``hr_*``
views in [0, 1]. :class:`TrainingLoss` returns ``{"total": weighted sum, <name>: value, ...}``
(a term that returns several parts, like distillation, logs them as ``<name>.<part>``).

Term types and their options (keyword arguments of the :mod:`stereosr.losses` modules):

- ``l1``, ``mse``, ``charbonnier`` (``eps``): pixel losses over both views;
- ``perceptual`` / ``texture``: VGG feature / Gram losses (``layers``, ``distance``, ``arch``,
  ``weights``: path or URL of torchvision-format weights, ``sha256``, ``cache_dir``);
- ``distill``: frozen teachers ``teachers: [checkpoint, ...]`` (same scale as the student) plus
  :class:`~stereosr.losses.DistillationLoss` options (``distance``, ``selection``,
  ``feature_pairs: {student layer: teacher layer}``, ...);
- ``quality``: KLT quality loss; statistics from ``stats: file`` or fitted at start on
  ``fit_patches`` HR training patches (``patch_size``, ``n_components``, ``stride``,
  ``remove_dc``) and saved as ``run_dir/klt_stats.safetensors``;
- ``consistency``: stereo consistency of the SR errors: the residuals ``SR - HR`` (average-pooled
  to LR resolution) of the right view, carried to the left view by a row-wise soft matching of
  the HR views (and vice versa), must agree with the left residuals. Zero at the ground truth;
  options ``distance``, ``temperature``, ``max_disparity`` (LR pixels), ``mask_threshold``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .config import LossTerm

__all__ = [
    "LOSS_TYPES",
    "BuiltTerm",
    "LossContext",
    "StudentForward",
    "StudentOutput",
    "TrainingLoss",
    "build_training_loss",
]

LOSS_TYPES = ("l1", "mse", "charbonnier", "perceptual", "texture", "distill", "quality",
              "consistency")

Views = Tensor | Sequence[Tensor]


@dataclass
class StudentOutput:
    """The student's SR views (B, 3, H, W) and features recorded for distillation."""

    sr_left: Tensor
    sr_right: Tensor
    features: dict[str, Views] = field(default_factory=dict)


class StudentForward(nn.Module):
    """``model(left, right)`` that also returns the features some losses need; wrapping this
    (not the bare model) in DistributedDataParallel keeps feature distillation synchronised."""

    def __init__(self, model: nn.Module, feature_layers: Sequence[str] = ()) -> None:
        super().__init__()
        self.model = model
        self.feature_layers = tuple(feature_layers)

    def forward(self, left: Tensor, right: Tensor) -> tuple[Tensor, Tensor, dict[str, Views]]:
        if not self.feature_layers:
            sr_l, sr_r = self.model(left, right)
            return sr_l, sr_r, {}
        from ..losses.distill import forward_with_features

        views, feats = forward_with_features(self.model, left, right, self.feature_layers)
        return views[0], views[1], feats


@dataclass
class LossContext:
    """What term builders may need besides their options."""

    scale: int
    device: torch.device
    student_width: int | None = None
    hr_patches: Callable[[int], Tensor] | None = None  # n -> (n, 3, H, W) HR training patches
    run_dir: str | None = None
    write_files: bool = True  # only rank 0 writes


@dataclass
class BuiltTerm:
    name: str
    weight: float
    module: nn.Module


def _both(out: StudentOutput, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """SR and HR with the two views stacked on the batch axis: (2B, 3, H, W) each."""
    return (torch.cat([out.sr_left, out.sr_right], dim=0),
            torch.cat([batch["hr_left"], batch["hr_right"]], dim=0))


class _PairTerm(nn.Module):
    """Applies ``fn(sr, hr)`` to both views stacked on the batch axis."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, out: StudentOutput, batch: Mapping[str, Tensor]) -> Tensor:
        sr, hr = _both(out, batch)
        return self.fn(sr.float(), hr.float())


class _QualityTerm(nn.Module):
    """KLT quality (no reference) of both SR views."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, out: StudentOutput, batch: Mapping[str, Tensor]) -> Tensor:
        return self.fn(torch.cat([out.sr_left, out.sr_right], dim=0).float())


class _DistillTerm(nn.Module):
    """Runs the frozen teachers on the batch's LR views (no_grad) and distils them."""

    def __init__(self, teachers: Any, loss: nn.Module, teacher_layers: Sequence[str]) -> None:
        super().__init__()
        self.teachers = teachers  # FrozenTeachers: not a module, so no state dict / optimizer
        self.loss = loss
        self.teacher_layers = tuple(teacher_layers)

    def forward(self, out: StudentOutput, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        t_out = self.teachers(batch["lr_left"], batch["lr_right"], self.teacher_layers)
        parts: dict[str, Tensor] = self.loss(
            (out.sr_left.float(), out.sr_right.float()), t_out,
            target=(batch["hr_left"], batch["hr_right"]),
            student_features=out.features or None)
        return parts


class _ConsistencyTerm(nn.Module):
    """Stereo consistency of the SR residuals (see the module docstring)."""

    def __init__(self, scale: int, distance: str = "l1", temperature: float = 0.01,
                 max_disparity: int | None = None, mask_threshold: float | None = 0.01) -> None:
        super().__init__()
        from ..losses._common import DISTANCES, check_choice

        self.distance = check_choice(distance, DISTANCES, "consistency distance")
        if temperature <= 0:
            raise InputError(f"consistency temperature must be > 0, got {temperature}")
        self.scale = scale
        self.temperature = float(temperature)
        self.max_disparity = max_disparity
        self.mask_threshold = mask_threshold

    def forward(self, out: StudentOutput, batch: Mapping[str, Tensor]) -> Tensor:
        from ..losses.consistency import attention_consistency_loss
        from ..stereo import row_matching_attention

        s = self.scale
        with torch.no_grad():
            hl = F.avg_pool2d(batch["hr_left"].float(), s)
            hr = F.avg_pool2d(batch["hr_right"].float(), s)
            a_r2l, a_l2r, best_l, best_r = row_matching_attention(
                hl, hr, temperature=self.temperature, max_disparity=self.max_disparity)
            if self.mask_threshold is None:
                m_l = m_r = None
            else:
                m_l, m_r = best_l <= self.mask_threshold, best_r <= self.mask_threshold
        res_l = F.avg_pool2d(out.sr_left.float() - batch["hr_left"].float(), s)
        res_r = F.avg_pool2d(out.sr_right.float() - batch["hr_right"].float(), s)
        return attention_consistency_loss(res_l, res_r, a_r2l, attention_l2r=a_l2r, mask=m_l,
                                          mask_right=m_r, distance=self.distance)


class TrainingLoss(nn.Module):
    """Weighted sum of terms; ``forward(out, batch)`` returns ``{"total": ..., parts...}``."""

    def __init__(self, terms: Sequence[BuiltTerm]) -> None:
        super().__init__()
        self.names = [t.name for t in terms]
        self.weights = [float(t.weight) for t in terms]
        self.terms = nn.ModuleDict({t.name: t.module for t in terms})

    @property
    def feature_layers(self) -> tuple[str, ...]:
        """Student layers whose features a term needs (feature distillation)."""
        layers: list[str] = []
        for module in self.terms.values():
            pairs = getattr(getattr(module, "loss", None), "feature_pairs", None) or {}
            layers.extend(k for k in pairs if k not in layers)
        return tuple(layers)

    def forward(self, out: StudentOutput, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        parts: dict[str, Tensor] = {}
        total: Tensor | None = None
        for name, weight in zip(self.names, self.weights):
            value = self.terms[name](out, batch)
            if isinstance(value, dict):
                for k, v in value.items():
                    parts[f"{name}.{k}"] = v.detach().float()
                value = sum(value.values())
            value = value.float()
            parts[name] = value.detach()
            total = weight * value if total is None else total + weight * value
        assert total is not None
        return {"total": total, **parts}

    def resumable_state(self) -> dict[str, Tensor]:
        """Tensors that a resumed run must restore: every buffer (fitted statistics...) and
        every TRAINABLE parameter of the terms (feature adapters). Frozen parameters (VGG
        backbones) are left out, and teachers are not modules of the loss at all: they are
        rebuilt from their sources."""
        out: dict[str, Tensor] = {}
        for name, module in self.terms.items():
            for k, v in module.named_buffers():
                out[f"{name}.{k}"] = v
            for k, p in module.named_parameters():
                if p.requires_grad:
                    out[f"{name}.{k}"] = p
        return out

    def load_resumable_state(self, sd: Mapping[str, Tensor]) -> None:
        own = self.resumable_state()
        if set(own) != set(sd):
            diff = sorted(set(own) ^ set(sd))
            raise InputError(f"the checkpoint's loss state does not match the configured losses "
                             f"(differs in {diff[:4]}); resume with the run's own config")
        with torch.no_grad():
            for k, v in sd.items():
                own[k].copy_(v)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.terms.parameters() if p.requires_grad]


def _take(opts: dict[str, Any], allowed: Sequence[str], term: str) -> dict[str, Any]:
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise InputError(f"loss {term!r}: unknown option(s) {', '.join(unknown)}; known: "
                         f"{', '.join(allowed)}")
    return opts


def _load_teacher(path: str, ctx: LossContext, k: int) -> nn.Module:
    from ..models.checkpoint import load_model

    model = load_model(path, device=ctx.device, tlc=False)
    if model.config.scale != ctx.scale:
        raise InputError(f"distillation teacher {k} ({path}) upscales x{model.config.scale} but "
                         f"the model trains x{ctx.scale}; teachers must have the same scale")
    return model


def _fit_quality(opts: dict[str, Any], ctx: LossContext, name: str) -> Any:
    from ..losses.quality import fit_klt, load_klt

    if "stats" in opts:
        return load_klt(opts["stats"])
    saved = Path(ctx.run_dir) / f"klt_stats_{name}.safetensors" if ctx.run_dir else None
    if saved is not None and saved.is_file():  # a resumed run uses the statistics it fitted
        return load_klt(saved)
    if ctx.hr_patches is None:
        raise InputError(f"loss {name!r}: no HR training patches to fit KLT statistics on")
    n = int(opts.get("fit_patches", 256))
    fit_kw = {k: opts[k] for k in ("patch_size", "n_components", "stride", "remove_dc")
              if k in opts}
    stats = fit_klt(ctx.hr_patches(n).double(), **fit_kw)
    if saved is not None and ctx.write_files:
        saved.parent.mkdir(parents=True, exist_ok=True)
        stats.save(saved, overwrite=True)
    return stats


def _build_term(term: LossTerm, ctx: LossContext) -> nn.Module:
    opts: dict[str, Any] = dict(term.options)
    kind = term.type.lower()
    name = term.name or term.type
    if kind in ("l1", "mse", "charbonnier"):
        from ..losses.pixel import CharbonnierLoss, L1Loss, MSELoss

        if kind == "charbonnier":
            _take(opts, ("eps",), name)
            return _PairTerm(CharbonnierLoss(**opts))
        _take(opts, (), name)
        return _PairTerm(L1Loss() if kind == "l1" else MSELoss())
    if kind in ("perceptual", "texture"):
        from ..losses.perceptual import PerceptualLoss
        from ..losses.texture import TextureLoss

        _take(opts, ("layers", "distance", "arch", "weights", "sha256", "cache_dir",
                     "normalize"), name)
        cls = PerceptualLoss if kind == "perceptual" else TextureLoss
        return _PairTerm(cls(**opts))
    if kind == "quality":
        from ..losses.quality import KLTQualityLoss

        _take(opts, ("stats", "fit_patches", "patch_size", "n_components", "stride",
                     "remove_dc"), name)
        return _QualityTerm(KLTQualityLoss(_fit_quality(opts, ctx, name)))
    if kind == "distill":
        from ..losses.distill import DistillationLoss, FrozenTeachers

        _take(opts, ("teachers", "distance", "selection", "select_by", "teacher_weights",
                     "output_weight", "feature_pairs", "feature_distance", "feature_weight",
                     "adapter"), name)
        paths = opts.pop("teachers", None)
        if isinstance(paths, str):
            paths = [paths]
        if not paths or not all(isinstance(p, str) for p in paths):
            raise InputError(f"loss {name!r}: options.teachers must list teacher checkpoints")
        models = [_load_teacher(p, ctx, k) for k, p in enumerate(paths)]
        teachers = FrozenTeachers(models, ctx.scale)
        pairs = dict(opts.get("feature_pairs") or {})
        if pairs:
            opts.setdefault("student_width", ctx.student_width)
            opts.setdefault("teacher_widths", teachers.widths())
        loss = DistillationLoss(**opts)
        return _DistillTerm(teachers, loss, tuple(dict.fromkeys(pairs.values())))
    if kind == "consistency":
        _take(opts, ("distance", "temperature", "max_disparity", "mask_threshold"), name)
        return _ConsistencyTerm(ctx.scale, **opts)
    raise InputError(f"unknown loss type {term.type!r}; use one of {', '.join(LOSS_TYPES)}")


def build_training_loss(terms: Sequence[LossTerm], ctx: LossContext) -> TrainingLoss:
    """Build every configured term (teachers loaded, statistics fitted) on ``ctx.device``.

    Raises :class:`InputError` for unknown types/options, missing or wrong-scale teachers.
    """
    built = []
    for term in terms:
        try:
            module = _build_term(term, ctx)
        except TypeError as exc:  # a bad option value the loss constructor rejected
            raise InputError(f"loss {term.name or term.type!r}: {exc}") from None
        built.append(BuiltTerm(term.name or term.type, term.weight, module.to(ctx.device)))
    return TrainingLoss(built)
