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
- ``quality``: a loss on the KLT coefficient statistics that KLTSR-QA uses (without its learned
  regressor): per-statistic ``weights`` (``{logvar: 1, log_share: 1, kurtosis: 1, mean: 0}``
  by default); statistics from ``stats: file`` or fitted on ``fit_patches`` HR training patches
  (``patch_size``, ``n_components``, ``stride``, ``remove_dc``) once the data is read, saved as
  ``run_dir/klt_stats_<name>.safetensors``. Alone it can be gamed (it scores images, not their
  fidelity), so a configuration whose only weighted terms are ``quality`` (or ``quality`` with
  ``consistency`` and/or ``texture``, which match statistics, not positions) is refused unless
  ``loss.allow_quality_only: true``;
- ``consistency``: stereo consistency of the SR errors: the residuals ``SR - HR`` (average-pooled
  to LR resolution) of the right view, carried to the left view by a row-wise soft matching of
  the HR views (and vice versa), must agree with the left residuals. Zero at the ground truth;
  options ``distance``, ``temperature``, ``max_disparity`` (LR pixels), ``mask_threshold``.

:data:`LOSS_REGISTRY` maps each type to its constructor: the options a YAML term may give are
the keyword parameters of that constructor (and of the functions it hands options on to), so a
typo or an option of another loss is refused with the list of known ones, and no option list
is kept by hand. :func:`build_training_loss` checks every term (names, option names and values,
teachers, weight files and their checksums) before the training data is read; only fitting KLT
statistics on training patches waits for the data (:meth:`TrainingLoss.fit_pending`).
"""

from __future__ import annotations

import inspect
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
    "LOSS_REGISTRY",
    "LOSS_TYPES",
    "BuiltTerm",
    "LossContext",
    "LossSpec",
    "StudentForward",
    "StudentOutput",
    "TrainingLoss",
    "build_training_loss",
    "check_quality_not_alone",
]

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
    """KLT-statistics quality (no reference) of both SR views. Built before the data is read;
    when its statistics are fitted on training patches, :meth:`fit` supplies them later."""

    def __init__(self, fn: nn.Module | None, fit: Callable[[Callable[[int], Tensor]],
                                                           nn.Module] | None = None) -> None:
        super().__init__()
        self.fn = fn
        self._fit = fit

    @property
    def pending(self) -> bool:
        return self.fn is None

    def fit(self, hr_patches: Callable[[int], Tensor], device: torch.device) -> None:
        assert self._fit is not None
        self.fn = self._fit(hr_patches).to(device)

    def forward(self, out: StudentOutput, batch: Mapping[str, Tensor]) -> Tensor:
        if self.fn is None:
            raise InputError("the KLT statistics are not fitted yet (TrainingLoss.fit_pending)")
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

    def logged(self) -> dict[str, Tensor]:
        """Share of the last batch's samples (pairs of patches) each teacher supervised, as
        ``teacher{k}_share`` (per-patch selection with several teachers; else nothing)."""
        index = getattr(self.loss, "last_index", None)
        if index is None:
            return {}
        counts = torch.bincount(index.detach().flatten(), minlength=len(self.teachers))
        return {f"teacher{k}_share": c.float() / max(1, index.numel())
                for k, c in enumerate(counts)}


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
            logged = getattr(self.terms[name], "logged", None)
            if logged is not None:  # values to log, not part of the loss
                parts.update({f"{name}.{k}": v.detach().float() for k, v in logged().items()})
        assert total is not None
        return {"total": total, **parts}

    def fit_pending(self, hr_patches: Callable[[int], Tensor], device: torch.device) -> None:
        """Fit the statistics of the terms that learn them from training patches
        (``hr_patches(n)`` -> (n, 3, H, W) in [0, 1]); a no-op when none waits."""
        for module in self.terms.values():
            if isinstance(module, _QualityTerm) and module.pending:
                module.fit(hr_patches, device)

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


@dataclass(frozen=True)
class LossSpec:
    """How one ``loss.terms[].type`` is built.

    ``signatures``: the callables whose keyword parameters are the term's YAML options (the
    loss constructor, and e.g. the fitting function it hands options on to); ``provided``:
    parameters the builder fills itself (not options); ``wiring``: options the builder reads
    itself; ``build(options, ctx, name)`` makes the term module; ``reference``: the term
    compares the output with the HR views or a teacher (a fidelity term).
    """

    signatures: tuple[Callable[..., Any], ...]
    build: Callable[[dict[str, Any], LossContext, str], nn.Module]
    provided: tuple[str, ...] = ()
    wiring: tuple[str, ...] = ()
    reference: bool = True

    def option_names(self) -> list[str]:
        """The options a YAML term of this type may give, sorted."""
        names = set(self.wiring)
        for fn in self.signatures:
            for p in inspect.signature(fn).parameters.values():
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                    names.add(p.name)
        return sorted(names - (set(self.provided) - set(self.wiring)))

    def check_options(self, opts: Mapping[str, Any], name: str) -> dict[str, Any]:
        """:class:`InputError` for options no constructor of this type takes, or whose value
        does not have the type the constructor's annotation gives (a list where a mapping is
        expected, a string where a number is...). Returns the options with numbers written
        as strings (PyYAML reads ``1e-3`` as one) converted."""
        known = self.option_names()
        unknown = sorted(set(opts) - set(known))
        if unknown:
            raise InputError(f"loss {name!r}: unknown option(s) {', '.join(unknown)}; known: "
                             f"{', '.join(known) or '(none)'}")
        out = dict(opts)
        for fn in reversed(self.signatures):  # the first signature's annotation wins
            params = inspect.signature(fn, eval_str=True).parameters
            for key in opts:
                if key in params and (key not in self.provided or key in self.wiring):
                    ann = params[key].annotation
                    try:
                        out[key] = _as_annotated(opts[key], ann)
                    except _OptionTypeError:
                        raise InputError(
                            f"loss {name!r}: option {key} must be "
                            f"{_describe(ann) or 'of another type'}, got {opts[key]!r}") from None
        return out


class _OptionTypeError(Exception):
    pass


def _as_annotated(value: Any, ann: Any) -> Any:
    """``value`` checked against the annotation ``ann`` (the plain types YAML gives: numbers,
    strings, booleans, null, lists, mappings; other classes are taken as they come), with
    numbers written as strings converted to float. Raises :class:`_OptionTypeError`."""
    import types
    import typing

    if ann is inspect.Parameter.empty or ann is Any:
        return value
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        for member in sorted(args, key=lambda a: a is str):  # numbers before strings
            try:
                return _as_annotated(value, member)
            except _OptionTypeError:
                continue
        raise _OptionTypeError
    if ann is type(None):
        if value is not None:
            raise _OptionTypeError
        return value
    if ann is bool:
        if not isinstance(value, bool):
            raise _OptionTypeError
        return value
    if ann is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _OptionTypeError
        return value
    if ann is float:
        from .config import _FLOAT_RE

        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _OptionTypeError
        return value
    if ann is str:
        if not isinstance(value, str):
            raise _OptionTypeError
        return value
    if origin is typing.Literal:
        if value not in args:
            raise _OptionTypeError
        return value
    base = origin or ann
    if base in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise _OptionTypeError
        if len(args) == 2:
            return {_as_annotated(k, args[0]): _as_annotated(v, args[1])
                    for k, v in value.items()}
        return value
    if base in (Sequence, list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _OptionTypeError
        return [_as_annotated(v, args[0]) for v in value] if len(args) == 1 else value
    if isinstance(base, type) and not isinstance(value, base):
        raise _OptionTypeError
    return value


def _describe(ann: Any) -> str:
    """How an option annotation reads in a message: 'a number or null', 'a mapping {string:
    number}'..."""
    import types
    import typing

    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in args]
        return " or ".join(dict.fromkeys(p for p in parts if p))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    base = origin or ann
    if base in (Mapping, dict):
        inner = f" {{{_describe(args[0]).split(' ', 1)[-1]}: {_describe(args[1]).split(' ', 1)[-1]}}}" \
            if len(args) == 2 else ""
        return "a mapping" + inner
    if base in (Sequence, list, tuple):
        plural = {"a number": "numbers", "an integer": "integers", "a string": "strings"}
        return "a list" + (f" of {plural.get(_describe(args[0]), 'values')}"
                           if len(args) == 1 else "")
    plain = {type(None): "null", bool: "true or false", int: "an integer", float: "a number",
             str: "a string"}
    if ann in plain:
        return plain[ann]
    return ""  # path-like objects, statistics objects...: not written in YAML


def _kwargs(fn: Callable[..., Any], opts: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``opts`` that are keyword parameters of ``fn``."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in opts.items() if k in params}


def _pair_term(cls: Callable[..., nn.Module]
               ) -> Callable[[dict[str, Any], LossContext, str], nn.Module]:
    """Builder of a loss ``cls(**options)(sr, hr)`` applied to both views."""
    def build(opts: dict[str, Any], ctx: LossContext, name: str) -> nn.Module:
        return _PairTerm(cls(**opts))
    return build


def earlier_stage_hint(path: str) -> str:
    """For a missing ``runs/<config>/model_final.safetensors`` (what a chained config such as
    ``ntire23_distill_x4`` starts from): which command makes it; else ''."""
    import re

    found = re.fullmatch(r"(?:.*/)?runs/([\w.-]+)/model_final\.safetensors", str(path))
    if found is None or Path(path).exists():
        return ""
    return (f" (it is the output of `stereosr train {found.group(1)}`: run that stage first, "
            "from this folder)")


def _load_teacher(path: str, ctx: LossContext, k: int) -> nn.Module:
    from ..errors import StereoSRError
    from ..models.checkpoint import load_model

    try:
        model = load_model(path, device=ctx.device, tlc=False)
    except StereoSRError as exc:
        raise type(exc)(f"distillation teacher {k}: {exc}{earlier_stage_hint(path)}") from None
    if model.config.scale != ctx.scale:
        raise InputError(f"distillation teacher {k} ({path}) upscales x{model.config.scale} but "
                         f"the model trains x{ctx.scale}; teachers must have the same scale")
    return model


def _build_distill(opts: dict[str, Any], ctx: LossContext, name: str) -> nn.Module:
    from ..losses.distill import DistillationLoss, FrozenTeachers

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


def _build_quality(opts: dict[str, Any], ctx: LossContext, name: str) -> nn.Module:
    from ..losses.quality import KLTQualityLoss, fit_klt, load_klt

    weights = opts.get("weights")
    fit_kw = _kwargs(fit_klt, {k: v for k, v in opts.items() if k != "images"})
    if "stats" in opts:
        return _QualityTerm(KLTQualityLoss(load_klt(opts["stats"]), weights))
    n = opts.get("fit_patches", 256)
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise InputError(f"loss {name!r}: fit_patches must be an integer >= 2, got {n!r}")
    # The fitting options and the statistic weights are checked now, before any data is
    # read, by fitting on two random images of 4 x 4 patches (milliseconds).
    size = 4 * int(fit_kw.get("patch_size", 8)) if isinstance(fit_kw.get("patch_size", 8),
                                                              int) else 32
    probe = fit_klt(torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0),
                               dtype=torch.float64), **fit_kw)
    KLTQualityLoss(probe, weights)
    saved = Path(ctx.run_dir) / f"klt_stats_{name}.safetensors" if ctx.run_dir else None
    if saved is not None and saved.is_file():  # a resumed run uses the statistics it fitted
        return _QualityTerm(KLTQualityLoss(load_klt(saved), weights))

    def fit(hr_patches: Callable[[int], Tensor]) -> nn.Module:
        stats = fit_klt(hr_patches(n).double(), **fit_kw)
        if saved is not None and ctx.write_files:
            saved.parent.mkdir(parents=True, exist_ok=True)
            stats.save(saved, overwrite=True)
        return KLTQualityLoss(stats, weights)

    term = _QualityTerm(None, fit)
    if ctx.hr_patches is not None:
        term.fit(ctx.hr_patches, ctx.device)
    return term


def _build_consistency(opts: dict[str, Any], ctx: LossContext, name: str) -> nn.Module:
    return _ConsistencyTerm(ctx.scale, **opts)


def _registry() -> dict[str, LossSpec]:
    from ..losses.distill import DistillationLoss
    from ..losses.perceptual import PerceptualLoss
    from ..losses.pixel import CharbonnierLoss, L1Loss, MSELoss
    from ..losses.quality import KLTQualityLoss, fit_klt
    from ..losses.texture import TextureLoss

    return {
        "l1": LossSpec((L1Loss,), _pair_term(L1Loss)),
        "mse": LossSpec((MSELoss,), _pair_term(MSELoss)),
        "charbonnier": LossSpec((CharbonnierLoss,), _pair_term(CharbonnierLoss)),
        "perceptual": LossSpec((PerceptualLoss,), _pair_term(PerceptualLoss),
                               provided=("backbone",)),
        # Gram matrices forget where features are: an image with the HR's textures in other
        # places matches them, so texture is no fidelity term beside the KLT quality loss.
        "texture": LossSpec((TextureLoss,), _pair_term(TextureLoss),
                            provided=("backbone",), reference=False),
        "distill": LossSpec((DistillationLoss,), _build_distill,
                            provided=("student_width", "teacher_widths"), wiring=("teachers",)),
        "quality": LossSpec((KLTQualityLoss, fit_klt), _build_quality,
                            provided=("stats", "images", "var_floor"),
                            wiring=("stats", "fit_patches"), reference=False),
        "consistency": LossSpec((_ConsistencyTerm,), _build_consistency, provided=("scale",),
                                reference=False),
    }


#: Term type -> :class:`LossSpec`, filled explicitly (no registration by import side effects).
LOSS_REGISTRY: dict[str, LossSpec] = _registry()
LOSS_TYPES = tuple(LOSS_REGISTRY)


def check_quality_not_alone(terms: Sequence[LossTerm], allow_quality_only: bool = False) -> None:
    """Refuse a loss whose weighted terms include ``quality`` but no fidelity term.

    The KLT-statistics loss scores an image on its own: minimised alone it drives the score
    below the true HR's while fidelity falls (any image with pristine-looking statistics
    wins). ``allow_quality_only`` (``loss.allow_quality_only: true``) lets it through.
    """
    weighted = [t for t in terms if t.weight > 0]
    if allow_quality_only or not any(t.type.lower() == "quality" for t in weighted):
        return
    spec = LOSS_REGISTRY
    if not any(spec[t.type.lower()].reference for t in weighted if t.type.lower() in spec):
        raise InputError(
            "loss.terms: the KLT quality loss has no fidelity term beside it; alone it can be "
            "gamed (it rates images, not their match to the HR): add l1/mse/charbonnier/"
            "perceptual/distill, or set loss.allow_quality_only: true")


def _build_term(term: LossTerm, ctx: LossContext) -> nn.Module:
    opts: dict[str, Any] = dict(term.options)
    kind = term.type.lower()
    name = term.name or term.type
    spec = LOSS_REGISTRY.get(kind)
    if spec is None:
        raise InputError(f"unknown loss type {term.type!r}; use one of {', '.join(LOSS_TYPES)}")
    opts = spec.check_options(opts, name)
    try:
        return spec.build(opts, ctx, name)
    except InputError as exc:  # the loaders speak of their API parameter: say where it goes
        msg = str(exc)
        if "pass weights=PATH" not in msg:
            raise
        raise type(exc)(msg.replace("pass weights=PATH", f"set options.weights: PATH in loss "
                                    f"term {name!r}")) from None


def build_training_loss(terms: Sequence[LossTerm], ctx: LossContext, *,
                        allow_quality_only: bool = False) -> TrainingLoss:
    """Build every configured term on ``ctx.device``: options checked against the
    constructors, teachers loaded, weight files found and checksummed. KLT statistics are
    fitted now when ``ctx.hr_patches`` is given, else later by
    :meth:`TrainingLoss.fit_pending` (so all checks can run before the data is read).

    Raises :class:`InputError` for weights that are negative or not finite, unknown
    types/options, option values of the wrong type or range, missing or
    wrong-scale teachers, missing or mismatching weights, and a ``quality`` term without a
    fidelity term (unless ``allow_quality_only``, see :func:`check_quality_not_alone`).
    """
    for term in terms:
        w = float(term.weight)
        if not (w >= 0 and w < float("inf")):
            raise InputError(f"loss {term.name or term.type!r}: weight must be a finite number "
                             f">= 0, got {term.weight}")
    check_quality_not_alone(terms, allow_quality_only)
    built = []
    for term in terms:
        try:
            module = _build_term(term, ctx)
        except TypeError as exc:  # a bad option value the loss constructor rejected
            raise InputError(f"loss {term.name or term.type!r}: {exc}") from None
        built.append(BuiltTerm(term.name or term.type, term.weight, module.to(ctx.device)))
    return TrainingLoss(built)
