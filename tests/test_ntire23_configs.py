"""The shipped NTIRE 2023 perceptual-track recipe: three stages, each starting from the previous
stage's output, run end to end on tiny data (the shipped files, shrunk only in size)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from train_utils import make_pairs
from weights_utils import random_backbone_state

from stereosr.cli import main
from stereosr.train.config import load_config

STAGES = ("ntire23_stage1_x4", "ntire23_distill_x4", "ntire23_quality_x4")
# Size only: a width-8, 2-block model, 8x24 LR patches, 2 iterations, one thread.
SMALL = ["model.width=8", "model.num_blocks=2", "data.lr_patch=[8, 24]", "data.batch_size=2",
         "data.num_workers=0", "schedule.total_iters=2", "train.checkpoint_every=2",
         "train.log_every=1", "train.threads=1", "train.progress=false",
         "train.tensorboard=false"]


def test_recipe_chains_stage_outputs() -> None:
    cfgs = [load_config(name) for name in STAGES]
    s1, s2, s3 = cfgs
    assert s2.model.init == f"{s1.train.run_dir}/model_final.safetensors"
    assert s3.model.init == f"{s2.train.run_dir}/model_final.safetensors"
    distill = next(t for t in s2.loss.terms if t.type == "distill")
    assert distill.options["teachers"][0] == s2.model.init
    assert len(distill.options["teachers"]) == 2 and distill.options["selection"] == "per_patch"
    types = [t.type for t in s1.loss.terms]
    assert types == ["l1", "perceptual", "texture"]
    assert [t.options.get("distance") for t in s1.loss.terms[1:]] == ["mse", "mse"]
    assert [t.options.get("arch") for t in s1.loss.terms[1:]] == ["vgg16", "vgg19"]
    assert "quality" in [t.type for t in s3.loss.terms] and not s3.loss.allow_quality_only
    for c in cfgs:  # the recipe's augmentations and stochastic depth
        assert c.data.hflip and c.data.vflip and c.data.rgb_perm and c.model.drop_path == 0.2


def test_three_stages_run_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the shipped relative paths (data/, runs/) live here
    make_pairs(tmp_path / "data" / "train", n=2, hw=(48, 144))
    vgg = {}
    for arch in ("vgg16", "vgg19"):  # ImageNet-layout weights made here (none ship offline)
        vgg[arch] = tmp_path / f"{arch}_test.pth"
        torch.save(random_backbone_state(arch, seed=1), vgg[arch])
    weights = {
        "ntire23_stage1_x4": [f"loss.terms.1.options.weights={vgg['vgg16']}",
                              f"loss.terms.2.options.weights={vgg['vgg19']}"],
        "ntire23_distill_x4": [],
        "ntire23_quality_x4": [f"loss.terms.1.options.weights={vgg['vgg16']}",
                               "loss.terms.2.options.fit_patches=16"],
    }
    for name in STAGES:
        args = ["train", name]
        for item in SMALL + weights[name]:
            args += ["--set", item]
        code = main(args)
        err = capsys.readouterr().err
        assert code == 0, err
        assert (tmp_path / "runs" / name / "model_final.safetensors").is_file()
    # stage 2 logged, per logging step, the share of samples each teacher supervised
    with open(tmp_path / "runs" / "ntire23_distill_x4" / "train.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    for row in rows:
        shares = float(row["distill.teacher0_share"]) + float(row["distill.teacher1_share"])
        assert shares == pytest.approx(1.0)
    # stage 3 fitted its KLT statistics and trained with them
    run3 = tmp_path / "runs" / "ntire23_quality_x4"
    assert (run3 / "klt_stats_klt_statistics.safetensors").is_file()
    recs = [json.loads(x) for x in (run3 / "log.jsonl").read_text().splitlines()]
    last = [r for r in recs if r["kind"] == "train"][-1]
    assert last["klt_statistics"] > 0 and last["perceptual"] > 0 and last["l1"] > 0
    # each stage started from the previous one's output
    saved = load_config(run3 / "config.yaml")
    assert saved.model.init == "runs/ntire23_distill_x4/model_final.safetensors"


@pytest.mark.parametrize("config, stage, where", [
    ("ntire23_distill_x4", "ntire23_stage1_x4", "model.init"),
    ("ntire23_quality_x4", "ntire23_distill_x4", "model.init"),
])
def test_a_stage_run_too_early_says_which_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str],
                                                 config: str, stage: str, where: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", config]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.count(f"runs/{stage}/model_final") == 1
    assert f"error: {where}: " in err and f"`stereosr train {stage}`: run that stage first" in err
    assert not (tmp_path / "runs" / config).exists() or not any(
        (tmp_path / "runs" / config).glob("*.safetensors"))


def test_missing_vgg_weights_name_the_config_option(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Offline without the VGG file, the message says where the file goes and which option of
    which loss term takes a local one (not the Python parameter weights=)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STEREOSR_OFFLINE", "1")
    monkeypatch.setenv("STEREOSR_CACHE", str(tmp_path / "cache"))
    assert main(["train", "ntire23_stage1_x4"]) == 2
    err = capsys.readouterr().err
    assert "set options.weights: PATH in loss term 'perceptual'" in err
    assert "weights=PATH" not in err and str(tmp_path / "cache" / "vgg16-397923af.pth") in err
