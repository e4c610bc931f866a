"""Knowledge distillation from frozen NAFSSR teachers.

Outputs are "views": one (B, C, H, W) tensor, or a tuple of them such as ``(sr_left,
sr_right)``. Distances are averaged over views, so one stereo training sample (a pair of
patches) is one unit of selection.

- :func:`output_distillation_loss`: distance between the student's output and the teachers'
  outputs (soft targets, never differentiated). One teacher: plain distance. Several teachers:
  ``selection="per_patch"`` uses, for each sample of the batch, the teacher whose output is
  closest to the ground truth on that sample (by ``select_by``); ``selection="weighted"`` sums
  the distances to every teacher with ``teacher_weights`` (default 1/K each).
- :func:`feature_distillation_loss`: distance between intermediate student features and teacher
  features, through a learnt 1x1 convolution (:class:`FeatureAdapter`, student width -> teacher
  width) when their widths differ. Its parameters must be given to the optimizer.
- :class:`FrozenTeachers`: runs teachers in eval mode under ``torch.no_grad``; their parameters
  are frozen and the object is not an ``nn.Module``, so teachers never end up in a loss module's
  parameters, state dict or optimizer.
- :func:`forward_with_features`: ``model(left, right)`` that also returns intermediate
  features: for NAFSSR ``"intro"`` and ``"body.{i}"`` (output of stereo block i) as the pair
  (features_left, features_right) of (B, width, h, w) tensors, from the model's own
  :meth:`~stereosr.models.nafssr.NAFSSR.forward_intermediates`; for other models the outputs of
  the named submodules, captured with forward hooks (:func:`record_features`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..models.nafssr import NAFSSR
from ._common import DISTANCES, check_choice, per_sample_distance

__all__ = ["DistillationLoss", "FeatureAdapter", "FrozenTeachers", "TeacherOutput", "Views",
           "feature_distillation_loss", "forward_with_features", "gather_views", "output_distillation_loss",
           "per_sample_error", "record_features", "select_teachers"]

Views = Tensor | Sequence[Tensor]
SELECTIONS = ("per_patch", "weighted")


def _as_views(x: Views, what: str) -> tuple[Tensor, ...]:
    views = (x,) if isinstance(x, Tensor) else tuple(x)
    if not views or not all(isinstance(v, Tensor) for v in views):
        raise InputError(f"{what} must be a tensor or a tuple of tensors")
    for v in views:
        if v.ndim < 2 or not v.is_floating_point():
            raise InputError(f"{what}: expected floating (B, ...) tensors, got {v.dtype} "
                             f"{tuple(v.shape)}")
    return views


def _check_matching(a: tuple[Tensor, ...], b: tuple[Tensor, ...], what_a: str,
                    what_b: str) -> None:
    if len(a) != len(b):
        raise InputError(f"{what_a} has {len(a)} views but {what_b} has {len(b)}")
    for va, vb in zip(a, b):
        if va.shape != vb.shape:
            raise InputError(f"{what_a} {tuple(va.shape)} and {what_b} {tuple(vb.shape)} differ "
                             f"in shape; a teacher must have the student's scale")


def per_sample_error(pred: Views, target: Views, distance: str = "l1") -> Tensor:
    """(B,) distance per sample: mean |pred - target| or squared difference, averaged over views."""
    kind = check_choice(distance, DISTANCES, "distance")
    p, t = _as_views(pred, "prediction"), _as_views(target, "target")
    _check_matching(p, t, "prediction", "target")
    return torch.stack([per_sample_distance(a, b, kind) for a, b in zip(p, t)]).mean(dim=0)


def select_teachers(teacher_outputs: Sequence[Views], target: Views,
                    distance: str = "l1") -> Tensor:
    """(B,) int64 index of the teacher closest to ``target`` on each sample (ties: lowest)."""
    if len(teacher_outputs) == 0:
        raise InputError("at least one teacher output is needed")
    with torch.no_grad():
        errors = torch.stack([per_sample_error(t, target, distance) for t in teacher_outputs])
    return errors.argmin(dim=0)


def gather_views(teacher_outputs: Sequence[Views], index: Tensor) -> tuple[Tensor, ...]:
    """Per sample b, the views of teacher ``index[b]``: a tuple of (B, ...) tensors."""
    per_teacher = [_as_views(t, f"teacher {k} output") for k, t in enumerate(teacher_outputs)]
    for k, t in enumerate(per_teacher[1:], start=1):
        _check_matching(per_teacher[0], t, "teacher 0 output", f"teacher {k} output")
    out = []
    for v in range(len(per_teacher[0])):
        stacked = torch.stack([t[v] for t in per_teacher])  # (K, B, ...)
        batch = torch.arange(stacked.shape[1], device=stacked.device)
        out.append(stacked[index.to(stacked.device), batch])
    return tuple(out)


def _teacher_weights(weights: Sequence[float] | None, k: int) -> list[float]:
    if weights is None:
        return [1.0 / k] * k
    ws = [float(w) for w in weights]
    if len(ws) != k or any(not (w >= 0 and w < float("inf")) for w in ws):
        raise InputError(f"teacher_weights must be {k} finite numbers >= 0, got {list(weights)}")
    return ws


def _combine(errors: Sequence[Tensor], *, selection: str, index: Tensor | None,
             weights: Sequence[float] | None) -> Tensor:
    """errors[k]: (B,) per-sample distance to teacher k -> scalar."""
    if len(errors) == 1:
        return errors[0].mean()
    stacked = torch.stack(list(errors))  # (K, B)
    if selection == "per_patch":
        assert index is not None
        batch = torch.arange(stacked.shape[1], device=stacked.device)
        return stacked[index.to(stacked.device), batch].mean()
    ws = _teacher_weights(weights, len(errors))
    return sum((w * e.mean() for w, e in zip(ws, errors)), stacked.new_zeros(()))


def _selection_index(teacher_outputs: Sequence[Views], target: Views | None, selection: str,
                     select_by: str, weights: Sequence[float] | None) -> Tensor | None:
    if len(teacher_outputs) < 2 or selection != "per_patch":
        return None
    if target is None:
        raise InputError("per-patch teacher selection needs the ground truth (target=...)")
    if weights is not None:
        raise InputError("teacher_weights apply to selection='weighted', not 'per_patch'")
    return select_teachers(teacher_outputs, target, select_by)


def output_distillation_loss(student: Views, teacher_outputs: Sequence[Views], *,
                             target: Views | None = None, distance: str = "l1",
                             selection: str = "per_patch", select_by: str = "l1",
                             teacher_weights: Sequence[float] | None = None,
                             index: Tensor | None = None) -> Tensor:
    """Scalar distance of the student's output to the (detached) teacher outputs.

    ``student``, each teacher output and ``target``: matching views, e.g. (sr_l, sr_r) of
    (B, 3, H, W) in [0, 1]. ``index``: a precomputed :func:`select_teachers` result.
    """
    kind = check_choice(distance, DISTANCES, "distillation distance")
    sel = check_choice(selection, SELECTIONS, "teacher selection")
    if len(teacher_outputs) == 0:
        raise InputError("at least one teacher output is needed")
    s = _as_views(student, "student output")
    teachers = [tuple(v.detach() for v in _as_views(t, f"teacher {k} output"))
                for k, t in enumerate(teacher_outputs)]
    for k, t in enumerate(teachers):
        _check_matching(s, t, "student output", f"teacher {k} output")
    if index is None:
        index = _selection_index(teachers, target, sel, select_by, teacher_weights)
    errors = [per_sample_error(s, t, kind) for t in teachers]
    return _combine(errors, selection=sel, index=index, weights=teacher_weights)


class FeatureAdapter(nn.Module):
    """Learnt 1x1 convolution mapping student features (width c_s) to a teacher's width c_t.

    Initialised so that, when c_t >= c_s, it copies the student channels into the first c_s
    teacher channels (zeros elsewhere); otherwise with PyTorch's default initialisation.
    """

    def __init__(self, student_width: int, teacher_width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(student_width, teacher_width, 1)
        with torch.no_grad():
            if teacher_width >= student_width:
                self.proj.weight.zero_()
                self.proj.weight[:student_width, :, 0, 0] = torch.eye(student_width)
                self.proj.bias.data.zero_()  # type: ignore[union-attr]

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


def _adapt(adapter: nn.Module | None, views: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return views if adapter is None else tuple(adapter(v) for v in views)


def feature_distillation_loss(student_features: Mapping[str, Views],
                              teacher_features: Sequence[Mapping[str, Views]],
                              pairs: Mapping[str, str], *,
                              adapters: Mapping[tuple[str, int], nn.Module] | None = None,
                              distance: str = "mse", selection: str = "per_patch",
                              index: Tensor | None = None,
                              teacher_weights: Sequence[float] | None = None) -> Tensor:
    """Scalar mean over ``pairs`` (student layer -> teacher layer) of feature distances.

    ``teacher_features[k]``: the recorded features of teacher k. ``adapters[(layer, k)]``: the
    module applied to the student's features of ``layer`` before comparing with teacher k
    (none: compared as they are; widths must then agree). With several teachers, ``index``
    (per-patch selection) or ``teacher_weights`` combine them as in
    :func:`output_distillation_loss`.
    """
    kind = check_choice(distance, DISTANCES, "feature distance")
    sel = check_choice(selection, SELECTIONS, "teacher selection")
    if not pairs:
        raise InputError("feature distillation needs at least one (student, teacher) layer pair")
    if len(teacher_features) > 1 and sel == "per_patch" and index is None:
        raise InputError("per-patch feature distillation needs the teacher selection index")
    adapters = adapters or {}
    parts = []
    for s_name, t_name in pairs.items():
        if s_name not in student_features:
            raise InputError(f"student features of {s_name!r} were not recorded")
        s_views = _as_views(student_features[s_name], f"student features {s_name!r}")
        errors = []
        for k, feats in enumerate(teacher_features):
            if t_name not in feats:
                raise InputError(f"features of {t_name!r} were not recorded for teacher {k}")
            t_views = tuple(v.detach() for v in _as_views(feats[t_name], f"teacher {k} "
                                                                          f"features {t_name!r}"))
            mapped = _adapt(adapters.get((s_name, k)), s_views)
            if len(mapped) != len(t_views) or any(
                    a.shape != b.shape for a, b in zip(mapped, t_views)):
                raise InputError(
                    f"student features {s_name!r} {tuple(mapped[0].shape)} do not match teacher "
                    f"{k} features {t_name!r} {tuple(t_views[0].shape)}; give the widths so an "
                    f"adapter is made")
            errors.append(per_sample_error(mapped, t_views, kind))
        parts.append(_combine(errors, selection=sel, index=index, weights=teacher_weights))
    return torch.stack(parts).mean()


@contextmanager
def record_features(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, Views]]:
    """Within the block, forward passes of ``model`` store outputs of submodules ``names``."""
    store: dict[str, Views] = {}
    handles = []
    try:
        for name in names:
            try:
                module = model.get_submodule(name)
            except AttributeError as exc:
                raise InputError(f"the model has no submodule {name!r} to take features "
                                 f"from (e.g. 'body.0')") from exc

            def hook(_m: nn.Module, _inp: object, out: object, _name: str = name) -> None:
                if isinstance(out, Tensor):
                    store[_name] = out
                elif isinstance(out, (tuple, list)) and all(isinstance(o, Tensor) for o in out):
                    store[_name] = tuple(out)
                else:
                    raise InputError(f"submodule {_name!r} does not return tensors")

            handles.append(module.register_forward_hook(hook))
        yield store
    finally:
        for h in handles:
            h.remove()


def forward_with_features(model: nn.Module, left: Tensor, right: Tensor,
                          layers: Sequence[str] = ()) -> tuple[tuple[Tensor, ...],
                                                               dict[str, Views]]:
    """``model(left, right)`` views and the features at ``layers`` (see the module docstring).

    ``left``, ``right``: (B, 3, h, w) LR views in [0, 1]. Gradients flow as in a plain call.
    """
    if isinstance(model, NAFSSR):
        try:
            views, named = model.forward_intermediates(left, right, layers)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return views, dict(named)
    with record_features(model, layers) as recorded:
        out = model(left, right)
    missing = [name for name in layers if name not in recorded]
    if missing:
        raise InputError(f"submodules {missing} did not run during the forward pass; no "
                         f"features to take from them")
    views = (out,) if isinstance(out, Tensor) else tuple(out)
    return views, {name: recorded[name] for name in layers}


@dataclass
class TeacherOutput:
    """A teacher's SR views and the features recorded during its forward pass."""

    views: tuple[Tensor, ...]
    features: dict[str, Views] = field(default_factory=dict)


def _model_scale(model: nn.Module) -> int | None:
    scale = getattr(model, "scale", None)
    if scale is None:
        scale = getattr(getattr(model, "config", None), "scale", None)
    return int(scale) if isinstance(scale, (int, float)) else None


def _model_width(model: nn.Module) -> int | None:
    width = getattr(getattr(model, "config", None), "width", None)
    return int(width) if isinstance(width, int) else None


class FrozenTeachers:
    """Frozen teacher models ``model(left, right) -> (sr_l, sr_r)`` run under ``no_grad``.

    Teachers are put in eval mode and their parameters get ``requires_grad=False``. ``scale``:
    the student's upscaling factor; a teacher of another scale is refused with
    :class:`InputError` (checked from ``model.scale`` / ``model.config.scale`` here, and from the
    output size at every call).
    """

    def __init__(self, models: Sequence[nn.Module], scale: int) -> None:
        if len(models) == 0:
            raise InputError("distillation needs at least one teacher model")
        for k, m in enumerate(models):
            if not isinstance(m, nn.Module):
                raise InputError(f"teacher {k} is not a torch module")
            s = _model_scale(m)
            if s is not None and s != scale:
                raise InputError(f"teacher {k} upscales x{s} but the student x{scale}; teachers "
                                 f"must have the student's scale")
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
        self.models = list(models)
        self.scale = int(scale)

    def __len__(self) -> int:
        return len(self.models)

    def widths(self) -> list[int | None]:
        """Feature width of each teacher (``config.width``), None where unknown."""
        return [_model_width(m) for m in self.models]

    def to(self, device: torch.device | str) -> FrozenTeachers:
        for m in self.models:
            m.to(device)
        return self

    def __call__(self, left: Tensor, right: Tensor,
                 feature_layers: Sequence[str] = ()) -> list[TeacherOutput]:
        """(B, 3, h, w) LR views -> every teacher's (sr_l, sr_r) and recorded features."""
        outputs = []
        for k, m in enumerate(self.models):
            m.eval()
            with torch.no_grad():
                if feature_layers:
                    views, feats = forward_with_features(m, left, right, feature_layers)
                else:
                    out = m(left, right)
                    views, feats = ((out,) if isinstance(out, Tensor) else tuple(out)), {}
            want = (left.shape[-2] * self.scale, left.shape[-1] * self.scale)
            if any(tuple(v.shape[-2:]) != want for v in views):
                raise InputError(f"teacher {k} returned {tuple(views[0].shape[-2:])} images for "
                                 f"{tuple(left.shape[-2:])} inputs; expected x{self.scale} "
                                 f"= {want}")
            outputs.append(TeacherOutput(views, feats))
        return outputs


class DistillationLoss(nn.Module):
    """Output (and optionally feature) distillation; ``forward`` returns named, weighted parts.

    ``forward(student_out, teacher_outs, target=None, student_features=None)`` ->
    ``{"output": ...}`` plus ``"feature"`` when ``feature_pairs`` is given; the total loss is the
    sum of the values. ``feature_pairs``: student layer -> teacher layer (e.g.
    ``{"body.3": "body.7"}``); ``student_width`` and ``teacher_widths`` (one per teacher) decide
    where a :class:`FeatureAdapter` is needed (``adapter="always"`` makes one everywhere). The
    adapters are this module's only parameters: add them to the optimizer.
    The last per-patch selection is kept in ``last_index`` (for logging teacher shares).
    """

    def __init__(self, *, distance: str = "l1", selection: str = "per_patch",
                 select_by: str = "l1", teacher_weights: Sequence[float] | None = None,
                 output_weight: float = 1.0, feature_pairs: Mapping[str, str] | None = None,
                 student_width: int | None = None,
                 teacher_widths: Sequence[int | None] | None = None,
                 feature_distance: str = "mse", feature_weight: float = 1.0,
                 adapter: str = "auto") -> None:
        super().__init__()
        self.distance = check_choice(distance, DISTANCES, "distillation distance")
        self.selection = check_choice(selection, SELECTIONS, "teacher selection")
        self.select_by = check_choice(select_by, DISTANCES, "teacher selection distance")
        self.feature_distance = check_choice(feature_distance, DISTANCES, "feature distance")
        self.teacher_weights = None if teacher_weights is None else [float(w) for w in
                                                                      teacher_weights]
        if self.teacher_weights is not None and self.selection == "per_patch":
            raise InputError("teacher_weights apply to selection='weighted', not 'per_patch'")
        self.output_weight = float(output_weight)
        self.feature_weight = float(feature_weight)
        self.feature_pairs = dict(feature_pairs or {})
        mode = check_choice(adapter, ("auto", "always"), "adapter")
        self.adapters = nn.ModuleDict()
        self._adapter_keys: dict[tuple[str, int], str] = {}
        if self.feature_pairs:
            if student_width is None or not teacher_widths:
                raise InputError("feature distillation needs student_width and teacher_widths")
            for s_name in self.feature_pairs:
                for k, t_width in enumerate(teacher_widths):
                    if t_width is None:
                        raise InputError(f"the feature width of teacher {k} is unknown; pass it "
                                         f"in teacher_widths")
                    if mode == "always" or t_width != student_width:
                        key = f"{s_name.replace('.', '_')}__t{k}"
                        self.adapters[key] = FeatureAdapter(student_width, t_width)
                        self._adapter_keys[(s_name, k)] = key
        self.num_feature_teachers = len(teacher_widths or [])
        self.last_index: Tensor | None = None

    def forward(self, student_out: Views, teacher_outs: Sequence[TeacherOutput | Views],
                target: Views | None = None,
                student_features: Mapping[str, Views] | None = None) -> dict[str, Tensor]:
        outputs = [t.views if isinstance(t, TeacherOutput) else t for t in teacher_outs]
        if len(outputs) == 0:
            raise InputError("at least one teacher output is needed")
        index = _selection_index([tuple(v.detach() for v in _as_views(o, "teacher output"))
                                  for o in outputs], target, self.selection, self.select_by,
                                 self.teacher_weights)
        self.last_index = index
        parts = {"output": self.output_weight * output_distillation_loss(
            student_out, outputs, target=target, distance=self.distance,
            selection=self.selection, select_by=self.select_by,
            teacher_weights=self.teacher_weights, index=index)}
        if self.feature_pairs:
            if student_features is None:
                raise InputError("feature distillation needs the student's recorded features")
            t_feats = []
            for k, t in enumerate(teacher_outs):
                if not isinstance(t, TeacherOutput):
                    raise InputError(f"teacher {k}: feature distillation needs TeacherOutput "
                                     f"objects from FrozenTeachers(..., feature_layers=...)")
                t_feats.append(t.features)
            if len(t_feats) != self.num_feature_teachers:
                raise InputError(f"{len(t_feats)} teacher outputs given, but adapters were made "
                                 f"for {self.num_feature_teachers} teachers")
            adapters = {pk: self.adapters[key] for pk, key in self._adapter_keys.items()}
            parts["feature"] = self.feature_weight * feature_distillation_loss(
                student_features, t_feats, self.feature_pairs, adapters=adapters,
                distance=self.feature_distance, selection=self.selection, index=index,
                teacher_weights=self.teacher_weights)
        return parts
