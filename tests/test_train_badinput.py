"""Bad input to `stereosr train`: one clear line, exit 2, before any training starts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from train_utils import make_pairs, tiny_config, write_config

from stereosr.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["train", *map(str, args)])
    err = capsys.readouterr().err.strip()
    return code, err


def check_error(code: int, err: str, text: str, run: Path) -> None:
    assert code == 2
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("stereosr train: error: ")
    assert text in lines[0], lines[0]
    assert not (run / "checkpoints").exists()  # nothing trained


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pairs(tmp_path_factory.mktemp("bad") / "pairs", n=2, hw=(48, 144))


def test_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path / "nowhere", run))
    check_error(*run_cli(capsys, cfg), "nowhere: folder not found", run)


def test_empty_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    (tmp_path / "empty").mkdir()
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path / "empty", run))
    check_error(*run_cli(capsys, cfg), "no stereo pairs", run)


def test_unset_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(tmp_path, run)
    cfg["data"]["train_root"] = ""
    check_error(*run_cli(capsys, write_config(tmp_path / "c.yaml", cfg)), "data.train_root",
                run)


def test_patch_larger_than_images(tmp_path: Path, pairs: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_config(pairs, run))
    # HR 48x144 at x2 -> LR 24x72; a 30x90 patch does not fit.
    code, err = run_cli(capsys, cfg, "--set", "data.lr_patch=[30, 90]")
    check_error(code, err, "data.lr_patch 30x90 is larger than the LR image 24x72", run)


def test_teacher_of_another_scale(tmp_path: Path, pairs: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from stereosr.models.checkpoint import save_model
    from stereosr.models.nafssr import build_nafssr

    teacher = save_model(build_nafssr("T", 4, width=8, num_blocks=1), tmp_path / "t4.safetensors")
    run = tmp_path / "run"
    cfg = tiny_config(pairs, run, loss={"terms": [
        {"type": "distill", "options": {"teachers": [str(teacher)]}}]})
    code, err = run_cli(capsys, write_config(tmp_path / "c.yaml", cfg))
    check_error(code, err, "upscales x4 but the model trains x2", run)


def test_missing_teacher(tmp_path: Path, pairs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(pairs, run, loss={"terms": [
        {"type": "distill", "options": {"teachers": [str(tmp_path / "nope.safetensors")]}}]})
    check_error(*run_cli(capsys, write_config(tmp_path / "c.yaml", cfg)),
                "distillation teacher 0: ", run)


@pytest.mark.parametrize("override, text", [
    ("optim.lrr=1", "unknown key 'optim.lrr'"),
    ("optim.lr=fast", "optim.lr must be a number"),
    ("train.seed=0.5", "train.seed must be an integer"),
    ("data.lr_patch=30", "data.lr_patch must be a list"),
    ("loss.terms=[{type: sharpness}]", "unknown loss type 'sharpness'"),
    ("loss.terms=[{type: mse, options: {eps: 1}}]", "unknown option(s) eps"),
    ("data.batch_size=3", "not divisible"),
])
def test_bad_config(tmp_path: Path, pairs: Path, capsys: pytest.CaptureFixture[str],
                    override: str, text: str) -> None:
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_config(pairs, run, train={"accumulate": 2}))
    check_error(*run_cli(capsys, cfg, "--set", override), text, run)


def test_unknown_key_in_file(tmp_path: Path, pairs: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(pairs, run)
    cfg["optim"]["lrr"] = 1.0
    check_error(*run_cli(capsys, write_config(tmp_path / "c.yaml", cfg)), "'optim.lrr'", run)


def test_existing_run_needs_resume_and_same_config(tmp_path: Path, pairs: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_config(pairs, run))
    assert run_cli(capsys, cfg)[0] == 0
    code, err = run_cli(capsys, cfg)
    assert code == 2 and "already holds a run; pass --resume" in err
    code, err = run_cli(capsys, cfg, "--resume", "--set", "optim.lr=1.0e-2")
    assert code == 2 and "optim.lr changed" in err
    # Same config (runtime-only keys may differ): nothing left to do, exits cleanly.
    assert run_cli(capsys, cfg, "--resume", "--set", "train.log_every=1")[0] == 0


def test_grey_and_rgba_pairs_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not an error: grey and RGBA views are converted to RGB."""
    root = tmp_path / "mixed"
    root.mkdir()
    rng = np.random.default_rng(0)
    grey = (rng.random((48, 144)) * 255).astype(np.uint8)
    Image.fromarray(grey).save(root / "0001_L.png")
    Image.fromarray(grey).save(root / "0001_R.png")
    rgba = (rng.random((48, 144, 4)) * 255).astype(np.uint8)
    Image.fromarray(rgba).save(root / "0002_L.png")
    Image.fromarray(rgba).save(root / "0002_R.png")
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_config(root, run))
    code, err = run_cli(capsys, cfg, "--set", "schedule.total_iters=2")
    assert code == 0, err
    assert (run / "model_final.safetensors").is_file()


def test_several_training_folders(tmp_path: Path, pairs: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """data.train_root and val.root take lists of folders: the pairs of all of them, each
    folder read with its own layout and its pair names prefixed; a folder named twice or
    holding no pairs is one clear error naming it."""
    from stereosr.data.datasets import StereoSRDataset
    from stereosr.train.data import open_pair_dataset

    other = make_pairs(tmp_path / "other", n=3, hw=(48, 144), seed=5)
    both = open_pair_dataset([str(pairs), str(other)], 2)
    assert len(both) == 5
    parts = [StereoSRDataset(pairs, 2), StereoSRDataset(other, 2)]
    expected = [(root, part[i]) for root, part in zip((pairs, other), parts)
                for i in range(len(part))]
    for k, (root, item) in enumerate(expected):
        got = both[k]
        assert got["name"] == f"{root}/{item['name']}"
        for view in ("lr_left", "lr_right", "hr_left", "hr_right"):
            np.testing.assert_array_equal(got[view], item[view])
    assert len({both[k]["name"] for k in range(5)}) == 5

    run = tmp_path / "run"
    cfg = tiny_config(pairs, run, val={"root": [str(other), str(pairs)]})
    cfg["data"]["train_root"] = [str(pairs), str(other)]
    code, err = run_cli(capsys, write_config(tmp_path / "c.yaml", cfg),
                        "--set", "schedule.total_iters=2")
    assert code == 0, err
    val = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())
           if r["kind"] == "val"]
    assert val and val[-1]["pairs"] == 5

    cfg["data"]["train_root"] = [str(pairs), str(pairs) + "/"]
    cfg["train"]["run_dir"] = str(tmp_path / "run2")
    code, err = run_cli(capsys, write_config(tmp_path / "c2.yaml", cfg))
    check_error(code, err, "name one folder twice", tmp_path / "run2")
    (tmp_path / "empty").mkdir()
    cfg["data"]["train_root"] = [str(pairs), str(tmp_path / "empty")]
    cfg["train"]["run_dir"] = str(tmp_path / "run3")
    code, err = run_cli(capsys, write_config(tmp_path / "c3.yaml", cfg))
    check_error(code, err, "empty", tmp_path / "run3")
    assert "no stereo pairs" in err


@pytest.mark.parametrize("loss, text", [
    ({"terms": [{"type": "perceptual", "options": {"distnce": "mse"}}]},
     "unknown option(s) distnce"),
    ({"terms": [{"type": "quality", "name": "klt"}]}, "loss.allow_quality_only: true"),
    ({"terms": [{"type": "l1"}, {"type": "perceptual"}]}, ("no vgg16 ImageNet weights: put "
                                                        "vgg16-397923af.pth")),
    ({"terms": [{"type": "l1"}, {"type": "texture", "options": {"weights": "WRONG"}}]},
     "vgg19-dcbb9e9d.pth has SHA-256"),
    ({"terms": [{"type": "l1"}, {"type": "quality", "options": {"weights": {"sharp": 1}}}]},
     "unknown KLT statistics ['sharp']"),
    ({"allow_quality_only": True, "terms": [{"type": "quality", "options": {
        "fit_patches": 8, "patch_size": 4}}]}, None),
])
def test_loss_checks_come_before_data_loading(tmp_path: Path, pairs: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch,
                                              loss: dict, text: str | None) -> None:
    """Bad losses and missing or wrong weights fail before any training image is read (the
    data loader is watched); a KLT-only loss runs when explicitly allowed."""
    from stereosr.train import loop

    reads: list[str] = []
    real = loop._load_cache

    def watched(*args: object, **kwargs: object) -> object:
        reads.append("data")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "_load_cache", watched)
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("STEREOSR_CACHE", str(cache))
    monkeypatch.setenv("STEREOSR_OFFLINE", "1")
    (cache / "vgg19-dcbb9e9d.pth").write_bytes(b"random weights under the official name")
    for term in loss["terms"]:
        if term.get("options", {}).get("weights") == "WRONG":
            term["options"]["weights"] = str(cache / "vgg19-dcbb9e9d.pth")
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_config(pairs, run, loss=loss))
    code, err = run_cli(capsys, cfg)
    if text is None:
        assert code == 0, err
        assert reads and (run / "model_final.safetensors").is_file()
        assert (run / "klt_stats_quality.safetensors").is_file()
        return
    check_error(code, err, text, run)
    assert reads == [], "training data was read before the loss was checked"
