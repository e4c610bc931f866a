"""Typed training configs: shipped recipes, unknown keys, wrong types, --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from stereosr.errors import InputError
from stereosr.models.nafssr import VARIANTS
from stereosr.train.config import (
    TrainConfig,
    apply_overrides,
    config_from_dict,
    diff_configs,
    dump_config,
    load_config,
    shipped_config_path,
)

# REFERENCE.md section 2: the official NAFSSR training recipe.
OFFICIAL = {"T": (0.0, 400_000), "S": (0.1, 100_000), "B": (0.2, 100_000), "L": (0.3, 100_000)}


@pytest.mark.parametrize("variant", list(OFFICIAL))
@pytest.mark.parametrize("scale", [2, 4])
def test_shipped_official_recipes(variant: str, scale: int) -> None:
    cfg = load_config(f"nafssr_{variant.lower()}_x{scale}")
    drop, iters = OFFICIAL[variant]
    assert cfg.model.variant == variant and cfg.model.scale == scale
    assert cfg.model.drop_path == drop == VARIANTS[variant][2]
    assert cfg.data.lr_patch == (30, 90)
    assert cfg.data.batch_size == 32
    assert (cfg.data.hflip, cfg.data.vflip, cfg.data.rgb_perm) == (True, True, True)
    assert cfg.optim.lr == 3e-3 and cfg.optim.betas == (0.9, 0.9)
    assert cfg.optim.weight_decay == 0.0
    assert cfg.schedule.kind == "cosine" and cfg.schedule.eta_min == 1e-7
    assert cfg.schedule.total_iters == iters and cfg.schedule.warmup_iters == 0
    assert cfg.train.grad_clip == 0.01
    assert [(t.type, t.weight) for t in cfg.loss.terms] == [("mse", 1.0)]
    assert cfg.val.every == 20_000


def test_cpu_configs_load() -> None:
    tiny = load_config("cpu_tiny")
    assert (tiny.model.width, tiny.model.num_blocks) == (16, 2)
    default = load_config("nafssr_t_x4_cpu")
    assert default.model.variant == "T" and default.model.scale == 4
    assert default.model.width is None  # the real NAFSSR-T


def test_every_shipped_config_round_trips() -> None:
    folder = shipped_config_path("cpu_tiny").parent  # type: ignore[union-attr]
    names = sorted(p.stem for p in folder.glob("*.yaml"))
    assert {f"nafssr_{v}_x{s}" for v in "tsbl" for s in (2, 4)} <= set(names)
    for name in names:
        cfg = load_config(name)
        again = config_from_dict(__import__("yaml").safe_load(dump_config(cfg)))
        assert again == cfg, name


@pytest.mark.parametrize("raw, key", [
    ({"optim": {"lrr": 1.0}}, "optim.lrr"),
    ({"modle": {}}, "modle"),
    ({"loss": {"terms": [{"type": "mse", "wieght": 2}]}}, "loss.terms.0.wieght"),
    ({"train": {"ema": 0.9}}, "train.ema"),
])
def test_unknown_keys_name_their_path(raw: dict, key: str) -> None:
    with pytest.raises(InputError) as err:
        config_from_dict(raw)
    msg = str(err.value)
    assert f"'{key}'" in msg and "\n" not in msg


def test_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(InputError, match="did you mean 'lr'"):
        config_from_dict({"optim": {"lrr": 1.0}})


@pytest.mark.parametrize("raw, key", [
    ({"optim": {"lr": "fast"}}, "optim.lr"),
    ({"optim": {"lr": True}}, "optim.lr"),
    ({"train": {"seed": 1.5}}, "train.seed"),
    ({"train": {"seed": True}}, "train.seed"),
    ({"data": {"lr_patch": [30]}}, "data.lr_patch"),
    ({"data": {"lr_patch": [30, "x"]}}, "data.lr_patch.1"),
    ({"data": {"hflip": "yes"}}, "data.hflip"),
    ({"data": {"train_root": 3}}, "data.train_root"),
    ({"model": {"variant": "XL"}}, "model.variant"),
    ({"model": "T"}, "model"),
    ({"train": {"amp": "fp8"}}, "train.amp"),
    ({"loss": {"terms": [{"type": "mse", "options": [1]}]}}, "loss.terms.0.options"),
])
def test_wrong_types_are_errors(raw: dict, key: str) -> None:
    with pytest.raises(InputError) as err:
        config_from_dict(raw)
    assert key in str(err.value)


@pytest.mark.parametrize("value", [3, [["a"]], ["data/train_hr", 4]])
def test_a_training_folder_or_a_list_of_them(value: object) -> None:
    with pytest.raises(InputError) as err:
        config_from_dict({"data": {"train_root": value}})
    assert str(err.value) == (f"config: data.train_root must be a string or a list of strings, "
                              f"got {value!r}")
    cfg = config_from_dict({"data": {"train_root": ["a", "b"]}, "val": {"root": ["c"]}})
    assert cfg.data.train_root == ("a", "b") and cfg.val.root == ("c",)


@pytest.mark.parametrize("raw, text", [
    ({"data": {"batch_size": 0}}, "data.batch_size"),
    ({"data": {"patch_tries": 0}}, "data.patch_tries"),
    ({"data": {"view_gain": 1.0}}, "data.view_gain"),
    ({"data": {"view_gain": -0.1}}, "data.view_gain"),
    ({"data": {"view_shift": -1}}, "data.view_shift"),
    ({"data": {"view_shift": 1.5}}, "data.view_shift"),
    ({"data": {"view_shift": 9}}, "data.view_shift"),
    ({"data": {"view_shift_prob": 0.5}}, "data.view_shift_prob"),
    ({"data": {"view_shift": 1, "view_shift_prob": 0.0}}, "data.view_shift_prob"),
    ({"data": {"view_shift": 1, "view_shift_prob": 1.2}}, "data.view_shift_prob"),
    ({"schedule": {"total_iters": 10, "warmup_iters": 10}}, "schedule.warmup_iters"),
    ({"optim": {"lr": 1e-3}, "schedule": {"eta_min": 1e-2}}, "schedule.eta_min"),
    ({"model": {"width": 7}}, "model.width"),
    ({"loss": {"terms": [{"type": "mse"}, {"type": "mse"}]}}, "duplicate"),
    ({"loss": {"terms": []}}, "loss.terms"),
])
def test_value_ranges(raw: dict, text: str) -> None:
    with pytest.raises(InputError, match=text.replace(".", r"\.")):
        config_from_dict(raw)


def test_yaml_float_spellings() -> None:
    # PyYAML reads 3e-3 (no dot) as a string; it is accepted as the number it spells.
    cfg = load_config(None, ["optim.lr=3e-3", "schedule.eta_min=1e-7"])
    assert cfg.optim.lr == 3e-3 and cfg.schedule.eta_min == 1e-7
    assert load_config(None, ["optim.lr=2"]).optim.lr == 2.0


def test_overrides() -> None:
    cfg = load_config("cpu_tiny", ["optim.lr=5.0e-4", "data.lr_patch=[16, 48]",
                                   "train.ema_decay=0.99", "val.root=null",
                                   "loss.terms.0.weight=2", "model.drop_path=0.1"])
    assert cfg.optim.lr == 5e-4
    assert cfg.data.lr_patch == (16, 48)
    assert cfg.train.ema_decay == 0.99
    assert cfg.loss.terms[0].weight == 2.0 and cfg.loss.terms[0].type == "l1"
    assert cfg.model.drop_path == 0.1
    base = load_config("cpu_tiny")
    assert sorted(diff_configs(base, cfg)) == sorted([
        "optim.lr", "data.lr_patch", "train.ema_decay", "loss.terms", "model.drop_path"])
    # A list item of the defaults can be overridden without the file naming the list.
    assert load_config(None, ["loss.terms.0.type=l1"]).loss.terms[0].type == "l1"


@pytest.mark.parametrize("item, text", [
    ("optim.lrr=1", "optim.lrr"),
    ("optim.lr", "KEY=VALUE"),
    ("optim.lr=[1, 2", "cannot parse"),
    ("optim.lr.x=1", "not a section"),
    ("loss.terms.5.weight=1", "no item 5"),
])
def test_bad_overrides(item: str, text: str) -> None:
    with pytest.raises(InputError, match=text):
        load_config("cpu_tiny", [item])


def test_defaults_and_files(tmp_path: Path) -> None:
    assert load_config(None) == TrainConfig()
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="mapping"):
        load_config(bad)
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    assert apply_overrides({}, []) == {}


def test_misspelt_config_name_suggests_the_shipped_one(tmp_path, monkeypatch) -> None:
    from stereosr.errors import InputError
    from stereosr.train.config import load_config

    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"ntire23_stag1_x4: config file not found.*did you mean "
                                         r"'ntire23_stage1_x4'\?") as info:
        load_config("ntire23_stag1_x4")
    assert "\n" not in str(info.value)
