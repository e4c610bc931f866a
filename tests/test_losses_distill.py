"""Distillation: per-patch teacher selection, weighting, feature adapters, frozen teachers."""

from __future__ import annotations

import pytest
import torch

from stereosr.errors import InputError
from stereosr.losses import (
    DistillationLoss,
    FeatureAdapter,
    FrozenTeachers,
    TeacherOutput,
    forward_with_features,
    output_distillation_loss,
    record_features,
    select_teachers,
)
from stereosr.models.nafssr import build_nafssr


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ground truth, and two teachers each better on different samples of a batch of 4."""
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(4, 3, 6, 8, generator=g, dtype=torch.float64)
    small = torch.tensor([0.05, 0.3, 0.05, 0.3], dtype=torch.float64).view(4, 1, 1, 1)
    noise = torch.randn(4, 3, 6, 8, generator=g, dtype=torch.float64).sign()
    t_a = target + small * noise             # close on samples 0 and 2
    t_b = target + (0.35 - small) * noise    # close on samples 1 and 3
    return target, t_a, t_b


def test_per_patch_selection_picks_closest_teacher() -> None:
    target, t_a, t_b = _batch()
    assert select_teachers([t_a, t_b], target).tolist() == [0, 1, 0, 1]
    assert select_teachers([t_b, t_a], target, "mse").tolist() == [1, 0, 1, 0]
    student = torch.rand(4, 3, 6, 8, dtype=torch.float64, requires_grad=True)
    loss = output_distillation_loss(student, [t_a, t_b], target=target)
    chosen = torch.stack([t_a[0], t_b[1], t_a[2], t_b[3]])
    assert loss.item() == pytest.approx((student - chosen).abs().mean().item(), rel=1e-12)
    loss_mse = output_distillation_loss(student, [t_a, t_b], target=target, distance="mse")
    assert loss_mse.item() == pytest.approx(((student - chosen) ** 2).mean().item(), rel=1e-12)
    loss.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()


def test_selection_uses_both_views_of_a_sample() -> None:
    target = _batch(1)[0]
    # Left views favour teacher a on sample 0 a little; right views favour b a lot.
    tl = target.clone()
    views_a = (tl + 0.01, target + 0.5)
    views_b = (tl + 0.02, target + 0.01)
    idx = select_teachers([views_a, views_b], (tl, target))
    assert idx.tolist() == [1, 1, 1, 1]
    student = (tl.clone().requires_grad_(), target.clone().requires_grad_())
    loss = output_distillation_loss(student, [views_a, views_b], target=(tl, target))
    assert loss.item() == pytest.approx(0.5 * (0.02 + 0.01), rel=1e-9)


def test_single_teacher_and_weighted_mode() -> None:
    target, t_a, t_b = _batch(2)
    s = torch.rand(4, 3, 6, 8, dtype=torch.float64)
    one = output_distillation_loss(s, [t_a])
    assert one.item() == pytest.approx((s - t_a).abs().mean().item(), rel=1e-12)
    w = output_distillation_loss(s, [t_a, t_b], selection="weighted", teacher_weights=[0.25, 2.0])
    want = 0.25 * (s - t_a).abs().mean() + 2.0 * (s - t_b).abs().mean()
    assert w.item() == pytest.approx(want.item(), rel=1e-12)
    eq = output_distillation_loss(s, [t_a, t_b], selection="weighted")
    assert eq.item() == pytest.approx(0.5 * ((s - t_a).abs().mean() + (s - t_b).abs().mean())
                                      .item(), rel=1e-12)
    with pytest.raises(InputError, match="ground truth"):
        output_distillation_loss(s, [t_a, t_b])
    with pytest.raises(InputError, match="weighted"):
        output_distillation_loss(s, [t_a, t_b], target=target, teacher_weights=[1, 1])
    with pytest.raises(InputError, match="scale"):
        output_distillation_loss(s, [t_a[..., :4]])


def test_soft_targets_are_not_differentiated() -> None:
    target, t_a, _ = _batch(3)
    teacher = t_a.clone().requires_grad_()
    student = torch.rand_like(target, requires_grad=True)
    output_distillation_loss(student, [teacher]).backward()
    assert teacher.grad is None and student.grad is not None


def _tiny(width: int, blocks: int, scale: int = 2, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_nafssr("T", scale=scale, width=width, num_blocks=blocks)
    with torch.no_grad():  # non-zero residual gains so blocks change their input
        for name, p in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.normal_(0, 0.5)
    return model


def test_frozen_teachers_get_no_gradients_and_features_distil() -> None:
    student = _tiny(8, 2, seed=1)
    t1, t2 = _tiny(8, 2, seed=2), _tiny(12, 3, seed=3)
    t2.train()
    teachers = FrozenTeachers([t1, t2], scale=2)
    assert not t2.training and all(not p.requires_grad for p in t2.parameters())
    assert teachers.widths() == [8, 12]
    g = torch.Generator().manual_seed(4)
    lr_l, lr_r = torch.rand(2, 3, 6, 10, generator=g), torch.rand(2, 3, 6, 10, generator=g)
    hr = (torch.rand(2, 3, 12, 20, generator=g), torch.rand(2, 3, 12, 20, generator=g))
    t2.train()  # someone switches a teacher to training mode: it is still run in eval mode
    outs = teachers(lr_l, lr_r, feature_layers=["body.1"])
    assert not t2.training
    with torch.no_grad():
        direct = t2(lr_l, lr_r)
    torch.testing.assert_close(outs[1].views[0], direct[0])
    assert all(not v.requires_grad for o in outs for v in o.views)
    assert outs[1].features["body.1"][0].shape == (2, 12, 6, 10)

    loss_fn = DistillationLoss(feature_pairs={"body.1": "body.1"}, student_width=8,
                               teacher_widths=teachers.widths(), feature_weight=0.5)
    assert list(loss_fn.adapters) == ["body_1__t1"], "an adapter only where widths differ"
    student.train()
    sr, feats = forward_with_features(student, lr_l, lr_r, ["body.1"])
    parts = loss_fn(sr, outs, target=hr, student_features=feats)
    assert set(parts) == {"output", "feature"}
    total = parts["output"] + parts["feature"]
    total.backward()
    for m in (t1, t2):
        assert all(p.grad is None for p in m.parameters()), "teachers must get no gradients"
    assert student.intro.weight.grad is not None and student.intro.weight.grad.abs().sum() > 0
    adapter = loss_fn.adapters["body_1__t1"]
    assert isinstance(adapter, FeatureAdapter) and adapter.proj.weight.grad is not None
    assert all(p is not q for p in loss_fn.parameters() for m in (t1, t2)
               for q in m.parameters())

    # The same feature loss by hand: per sample, distance to the selected teacher's features.
    idx = loss_fn.last_index
    assert idx is not None
    want_idx = select_teachers([o.views for o in outs], hr)
    assert idx.tolist() == want_idx.tolist()
    per_teacher = []
    for k, o in enumerate(outs):
        errs = []
        for v in range(2):
            s_f = feats["body.1"][v].detach()
            if k == 1:
                s_f = adapter(s_f)
            errs.append(((s_f - o.features["body.1"][v]) ** 2).flatten(1).mean(1))
        per_teacher.append(0.5 * (errs[0] + errs[1]))
    want = torch.stack([per_teacher[int(k)][b] for b, k in enumerate(idx)]).mean()
    assert parts["feature"].item() == pytest.approx(0.5 * want.item(), rel=1e-5)


@pytest.mark.parametrize("train,grad", [(False, False), (False, True), (True, True)])
def test_forward_with_features_equals_plain_forward(train: bool, grad: bool) -> None:
    model = _tiny(8, 3, seed=6).train(train)
    g = torch.Generator().manual_seed(7)
    left, right = torch.rand(2, 3, 5, 9, generator=g), torch.rand(2, 3, 5, 9, generator=g)
    with torch.set_grad_enabled(grad):
        plain = model(left, right)
        views, feats = forward_with_features(model, left, right,
                                             ["body.2", "intro", "body.0", "body.1"])
    for a, b in zip(views, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert list(feats) == ["body.2", "intro", "body.0", "body.1"]
    # The last block's output, through the upsampler, gives the SR views.
    f_l, f_r = feats["body.2"]
    up = model.up(torch.cat([f_l, f_r])) + torch.nn.functional.interpolate(
        torch.cat([left, right]), scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(up[:2], plain[0], rtol=1e-5, atol=1e-6)
    # A single block applied to the recorded input features gives the recorded output.
    with torch.set_grad_enabled(grad):
        blk_out = model.body[1](*feats["body.0"])
    torch.testing.assert_close(blk_out[1], feats["body.1"][1], rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="body.0"):
        forward_with_features(model, left, right, ["body.3"])


def test_adapter_starts_as_channel_copy() -> None:
    a = FeatureAdapter(4, 6)
    x = torch.rand(2, 4, 3, 3)
    y = a(x)
    torch.testing.assert_close(y[:, :4], x)
    assert y[:, 4:].abs().max() == 0


def test_teacher_of_other_scale_is_refused() -> None:
    with pytest.raises(InputError, match="x4 but the student x2"):
        FrozenTeachers([_tiny(8, 1, scale=2), _tiny(8, 1, scale=4)], scale=2)

    class Unlabelled(torch.nn.Module):
        def forward(self, left: torch.Tensor, right: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
            up = torch.nn.functional.interpolate
            return up(left, scale_factor=3.0), up(right, scale_factor=3.0)

    teachers = FrozenTeachers([Unlabelled()], scale=2)
    with pytest.raises(InputError, match="expected x2"):
        teachers(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))


def test_feature_mode_errors() -> None:
    with pytest.raises(InputError, match="student_width"):
        DistillationLoss(feature_pairs={"body.0": "body.0"})
    loss_fn = DistillationLoss(feature_pairs={"body.0": "body.0"}, student_width=8,
                               teacher_widths=[8])
    s = torch.rand(1, 3, 4, 4)
    with pytest.raises(InputError, match="TeacherOutput"):
        loss_fn(s, [s], student_features={"body.0": s})
    with pytest.raises(InputError, match="recorded"):
        loss_fn(s, [TeacherOutput((s,), {})], student_features={"body.0": s})
    with pytest.raises(InputError, match="no submodule"), \
            record_features(_tiny(8, 1), ["body.5"]):
        pass

    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Conv2d(3, 4, 1)
            self.unused = torch.nn.Conv2d(3, 4, 1)

        def forward(self, left: torch.Tensor, right: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
            return self.head(left), self.head(right)

    x = torch.rand(1, 3, 4, 4)
    views, feats = forward_with_features(Plain(), x, x, ["head"])
    torch.testing.assert_close(feats["head"], views[1])
    with pytest.raises(InputError, match="did not run"):
        forward_with_features(Plain(), x, x, ["unused"])
