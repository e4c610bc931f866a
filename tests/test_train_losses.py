"""The training objective built from the config: weighted parts, teachers, KLT, consistency."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stereosr.models.checkpoint import save_model
from stereosr.models.nafssr import build_nafssr
from stereosr.stereo import row_matching_attention
from stereosr.train.config import LossTerm
from stereosr.train.losses import (
    LossContext,
    StudentForward,
    StudentOutput,
    build_training_loss,
)


def _batch(b: int = 2, h: int = 6, w: int = 18, s: int = 2, seed: int = 0
           ) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {k: torch.rand(b, 3, h, w, generator=g) for k in ("lr_left", "lr_right")}
    out.update({k: torch.rand(b, 3, s * h, s * w, generator=g) for k in ("hr_left", "hr_right")})
    return out


def _ctx(tmp_path: Path | None = None, scale: int = 2) -> LossContext:
    return LossContext(scale=scale, device=torch.device("cpu"), student_width=8,
                       run_dir=str(tmp_path) if tmp_path else None,
                       hr_patches=lambda n: _batch(b=n, seed=5)["hr_left"])


def test_weighted_sum_of_named_parts() -> None:
    loss = build_training_loss([LossTerm("mse", 2.0), LossTerm("l1", 0.5, name="abs"),
                                LossTerm("charbonnier", 1.0, options={"eps": 1e-2})], _ctx())
    batch = _batch()
    sr_l, sr_r = batch["hr_left"] + 0.1, batch["hr_right"] - 0.05 * batch["hr_right"]
    parts = loss(StudentOutput(sr_l, sr_r), batch)
    sr6 = torch.cat([sr_l, sr_r], 1)
    hr6 = torch.cat([batch["hr_left"], batch["hr_right"]], 1)
    mse = F.mse_loss(sr6, hr6)  # the official loss: MSE over the 6-channel output
    l1 = F.l1_loss(sr6, hr6)
    ch = torch.sqrt((sr6 - hr6) ** 2 + 1e-4).mean()
    torch.testing.assert_close(parts["mse"], mse)
    torch.testing.assert_close(parts["abs"], l1)
    torch.testing.assert_close(parts["charbonnier"], ch)
    torch.testing.assert_close(parts["total"], 2 * mse + 0.5 * l1 + ch)


def test_teachers_are_frozen_and_outside_the_optimizer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = save_model(build_nafssr("T", 2, width=12, num_blocks=2),
                         tmp_path / "teacher.safetensors")
    loss = build_training_loss([LossTerm("mse"), LossTerm("distill", 0.5, options={
        "teachers": [str(teacher)], "feature_pairs": {"body.1": "body.0"}})], _ctx())
    student = build_nafssr("T", 2, width=8, num_blocks=2)
    fwd = StudentForward(student, loss.feature_layers)
    assert loss.feature_layers == ("body.1",)
    batch = _batch()
    sr_l, sr_r, feats = fwd(batch["lr_left"], batch["lr_right"])
    parts = loss(StudentOutput(sr_l, sr_r, feats), batch)
    assert {"distill", "distill.output", "distill.feature"} <= set(parts)
    torch.testing.assert_close(parts["distill"], parts["distill.output"] + parts["distill.feature"])
    parts["total"].backward()
    teachers = loss.terms["distill"].teachers.models
    assert all(not p.requires_grad and p.grad is None for m in teachers for p in m.parameters())
    # Only the student-width -> teacher-width adapter is trainable on the loss side; the
    # teacher is neither a parameter nor saved state of the loss.
    trainable = loss.trainable_parameters()
    assert [tuple(p.shape) for p in trainable] == [(12, 8, 1, 1), (12,)]
    assert all(p.grad is not None for p in trainable)
    n_teacher = sum(p.numel() for m in teachers for p in m.parameters())
    assert sum(v.numel() for v in loss.resumable_state().values()) == 12 * 8 + 12
    assert sum(p.numel() for p in loss.parameters()) == 12 * 8 + 12 < n_teacher


def test_row_matching_finds_the_disparity() -> None:
    d, h, w = 5, 4, 40
    scene = torch.rand(1, 3, h, w + d, generator=torch.Generator().manual_seed(1))
    left, right = scene[..., :w], scene[..., d:d + w]  # right[x] = left[x + d]
    a_r2l, a_l2r, best_l, _ = row_matching_attention(left, right, temperature=1e-3)
    assert a_r2l.shape == (1, h, w, w)
    torch.testing.assert_close(a_r2l.sum(-1), torch.ones(1, h, w))
    # Left pixel x sees right pixel x - d; right pixel x sees left pixel x + d (interior).
    x = torch.arange(d + 2, w - 2)
    assert torch.equal(a_r2l[0, :, x].argmax(-1), (x - d).expand(h, -1))
    xr = torch.arange(2, w - d - 2)
    assert torch.equal(a_l2r[0, :, xr].argmax(-1), (xr + d).expand(h, -1))
    assert float(best_l[..., d + 2:w - 2].max()) < 1e-6


def test_consistency_is_zero_at_the_ground_truth() -> None:
    loss = build_training_loss([LossTerm("consistency", options={"temperature": 0.01})], _ctx())
    batch = _batch()
    zero = loss(StudentOutput(batch["hr_left"], batch["hr_right"]), batch)["total"]
    assert float(zero) == 0.0
    noisy = loss(StudentOutput(batch["hr_left"] + 0.1 * torch.rand_like(batch["hr_left"]),
                               batch["hr_right"]), batch)["total"]
    assert float(noisy) > 0.0


def test_quality_statistics_fitted_once_and_reused(tmp_path: Path) -> None:
    term = LossTerm("quality", options={"fit_patches": 8, "patch_size": 4})
    first = build_training_loss([term], _ctx(tmp_path), allow_quality_only=True)
    saved = tmp_path / "klt_stats_quality.safetensors"
    assert saved.is_file()
    stamp = saved.stat().st_mtime_ns
    again = build_training_loss([term], LossContext(scale=2, device=torch.device("cpu"),
                                                    run_dir=str(tmp_path)),
                                allow_quality_only=True)  # no patches needed
    assert saved.stat().st_mtime_ns == stamp
    for k, v in first.resumable_state().items():
        assert torch.equal(v, again.resumable_state()[k])
    batch = _batch()
    value = first(StudentOutput(batch["hr_left"], batch["hr_right"]), batch)["quality"]
    assert torch.isfinite(value)


@pytest.mark.parametrize("term, text", [
    (LossTerm("distill", options={}), "options.teachers"),
    (LossTerm("quality", options={"stats": "/nonexistent/klt.safetensors"}), "not found"),
    (LossTerm("consistency", options={"temperature": 0}), "temperature"),
    (LossTerm("consistency", options={"window": 3}), "unknown option(s) window"),
    (LossTerm("perceptual", options={"distnce": "mse"}), ("unknown option(s) distnce; known: "
                                                          "arch, cache_dir, distance, layers, "
                                                          "normalize, sha256, weights")),
    (LossTerm("l1", options={"eps": 0.1}), "unknown option(s) eps; known: (none)"),
    (LossTerm("quality", options={"weights": {"logvar": 1, "sharpness": 1}}),
     "unknown KLT statistics ['sharpness']"),
    (LossTerm("quality", options={"patch_size": 1}), "patch_size"),
    (LossTerm("quality", options={"fit_patches": 1}), "fit_patches must be an integer >= 2"),
])
def test_bad_term_options(term: LossTerm, text: str) -> None:
    from stereosr.errors import InputError

    ctx = _ctx()
    ctx.hr_patches = None  # every option is checked before any training data exists
    with pytest.raises(InputError, match=re.escape(text)):
        build_training_loss([term, LossTerm("mse")], ctx)


def test_options_are_the_constructors_keyword_parameters() -> None:
    """The registry keeps no option lists: they are read from the constructors' signatures."""
    import inspect

    from stereosr.losses import DistillationLoss, PerceptualLoss, TextureLoss
    from stereosr.losses.quality import KLTQualityLoss, fit_klt
    from stereosr.train.losses import LOSS_REGISTRY

    def params(fn: object) -> set[str]:
        return set(inspect.signature(fn).parameters) - {"self"}  # type: ignore[arg-type]

    assert LOSS_REGISTRY["perceptual"].option_names() == sorted(params(PerceptualLoss)
                                                                - {"backbone"})
    assert LOSS_REGISTRY["texture"].option_names() == sorted(params(TextureLoss) - {"backbone"})
    assert LOSS_REGISTRY["distill"].option_names() == sorted(
        params(DistillationLoss) - {"student_width", "teacher_widths"} | {"teachers"})
    assert LOSS_REGISTRY["quality"].option_names() == sorted(
        (params(KLTQualityLoss) | params(fit_klt)) - {"images", "var_floor"} | {"fit_patches"})
    assert LOSS_REGISTRY["charbonnier"].option_names() == ["eps"]


@pytest.mark.parametrize("terms, refused", [
    ([LossTerm("quality")], True),
    ([LossTerm("quality"), LossTerm("consistency")], True),
    ([LossTerm("quality"), LossTerm("mse", 0.0)], True),  # a fidelity term with no weight
    ([LossTerm("quality"), LossTerm("texture")], True),  # Gram statistics: no positions
    ([LossTerm("quality"), LossTerm("texture"), LossTerm("perceptual", 0.01)], False),
    ([LossTerm("quality", 0.1), LossTerm("l1")], False),
    ([LossTerm("quality", 0.1), LossTerm("charbonnier", 1.0)], False),
])
def test_quality_loss_needs_a_fidelity_term(terms: list[LossTerm], refused: bool) -> None:
    from stereosr.errors import InputError
    from stereosr.train.losses import check_quality_not_alone

    if refused:
        with pytest.raises(InputError, match="allow_quality_only: true") as info:
            check_quality_not_alone(terms)
        assert "\n" not in str(info.value)
        check_quality_not_alone(terms, allow_quality_only=True)  # explicitly allowed
    else:
        check_quality_not_alone(terms)


def test_quality_statistic_weights_from_options(tmp_path: Path) -> None:
    from stereosr.losses.quality import klt_quality_loss, load_klt

    weights = {"logvar": 2.0, "log_share": 0.0, "kurtosis": 0.5, "mean": 0.25}
    term = LossTerm("quality", options={"fit_patches": 8, "patch_size": 4, "weights": weights})
    ctx = _ctx(tmp_path)
    hr_patches, ctx.hr_patches = ctx.hr_patches, None
    loss = build_training_loss([term, LossTerm("mse", 0.0)], ctx, allow_quality_only=True)
    assert not (tmp_path / "klt_stats_quality.safetensors").exists()  # waits for the data
    assert hr_patches is not None
    loss.fit_pending(hr_patches, torch.device("cpu"))
    stats = load_klt(tmp_path / "klt_stats_quality.safetensors")
    batch = _batch()
    sr_l, sr_r = batch["hr_left"] * 0.5, batch["hr_right"]
    got = loss(StudentOutput(sr_l, sr_r), batch)["quality"]
    want = klt_quality_loss(torch.cat([sr_l, sr_r]).double(), stats, weights)
    assert float(got) == pytest.approx(float(want), rel=1e-4)
    default = klt_quality_loss(torch.cat([sr_l, sr_r]).double(), stats)
    assert abs(float(default) - float(want)) > 1e-3  # the weights made a difference


def test_teacher_shares_are_logged(tmp_path: Path) -> None:
    """With per-patch selection the loss logs the share of samples each teacher supervised,
    the teacher closest to the HR (L1 over both views) taking the sample."""
    torch.manual_seed(0)
    paths = [save_model(build_nafssr("T", 2, width=8, num_blocks=1),
                        tmp_path / f"t{k}.safetensors") for k in range(2)]
    loss = build_training_loss([LossTerm("l1"), LossTerm("distill", options={
        "teachers": [str(p) for p in paths]})], _ctx())
    batch = _batch(b=6, seed=3)
    parts = loss(StudentOutput(batch["hr_left"], batch["hr_right"]), batch)
    teachers = loss.terms["distill"].teachers.models
    with torch.no_grad():
        errs = []
        for m in teachers:
            sl, sr = m(batch["lr_left"], batch["lr_right"])
            errs.append(0.5 * ((sl - batch["hr_left"]).abs().flatten(1).mean(1)
                               + (sr - batch["hr_right"]).abs().flatten(1).mean(1)))
    pick = torch.stack(errs).argmin(0)
    want1 = float((pick == 1).float().mean())
    assert float(parts["distill.teacher1_share"]) == pytest.approx(want1)
    assert float(parts["distill.teacher0_share"]) == pytest.approx(1 - want1)
    assert 0 < want1 < 1  # both teachers won some samples in this batch
    # logged values are not part of the loss
    torch.testing.assert_close(parts["total"], parts["l1"] + parts["distill"])


@pytest.mark.parametrize("term, text", [
    (LossTerm("perceptual", options={"layers": ["relu1_2"]}),
     "option layers must be a mapping {string: number} or null, got ['relu1_2']"),
    (LossTerm("quality", options={"weights": [1, 2]}), "option weights must be a mapping"),
    (LossTerm("quality", options={"weights": {"logvar": "high"}}), "option weights must be"),
    (LossTerm("quality", options={"patch_size": 8.5}), "option patch_size must be an integer"),
    (LossTerm("quality", options={"stats": 5}), "option stats must be a string, got 5"),
    (LossTerm("charbonnier", options={"eps": [1e-3]}), "option eps must be a number"),
    (LossTerm("distill", options={"teachers": ["stereosr-x4"], "teacher_weights": 5}),
     "option teacher_weights must be a list of numbers or null, got 5"),
    (LossTerm("distill", options={"teachers": ["stereosr-x4"], "feature_pairs": ["body.0"]}),
     "option feature_pairs must be a mapping {string: string} or null"),
    (LossTerm("perceptual", options={"normalize": "no"}), "option normalize must be true or"),
    (LossTerm("consistency", options={"max_disparity": 2.5}),
     "option max_disparity must be an integer or null"),
    (LossTerm("l1", weight=-1.0), "weight must be a finite number >= 0, got -1.0"),
    (LossTerm("l1", weight=float("nan")), "weight must be a finite number >= 0, got nan"),
])
def test_option_values_of_the_wrong_type(term: LossTerm, text: str) -> None:
    """Every option value is checked against the type its constructor declares, so a YAML
    slip (a list for a mapping, a word for a number) is one line naming the option, not a
    Python error from deep inside a loss."""
    from stereosr.errors import InputError

    ctx = _ctx()
    ctx.hr_patches = None
    with pytest.raises(InputError, match=re.escape(text)) as info:
        build_training_loss([term, LossTerm("mse")], ctx)
    assert "\n" not in str(info.value)


def test_numbers_written_as_strings_are_read_as_numbers() -> None:
    """PyYAML reads 2e-2 (no dot) as a string; an option declared float takes it as 0.02."""
    from stereosr.train.config import load_config

    cfg = load_config("nafssr_t_x4", ["loss.terms=[{type: charbonnier, options: {eps: 2e-2}}]"])
    loss = build_training_loss(cfg.loss.terms, _ctx())
    out = StudentOutput(torch.full((1, 3, 4, 4), 0.5), torch.full((1, 3, 4, 4), 0.5))
    batch = {"hr_left": torch.full((1, 3, 4, 4), 0.5), "hr_right": torch.full((1, 3, 4, 4), 0.5)}
    assert float(loss(out, batch)["total"]) == pytest.approx(2e-2, rel=1e-5)  # sqrt(0 + eps^2)


def test_negative_weight_is_no_fidelity_term() -> None:
    from stereosr.errors import InputError
    from stereosr.train.losses import check_quality_not_alone

    with pytest.raises(InputError, match="allow_quality_only"):
        check_quality_not_alone([LossTerm("quality"), LossTerm("l1", -1.0)])
    from stereosr.train.config import load_config

    for value in ("-1", ".nan", ".inf"):
        with pytest.raises(InputError, match=r"loss.terms.0.weight must be a finite number >= 0"):
            load_config("nafssr_t_x4", [f"loss.terms.0.weight={value}"])
