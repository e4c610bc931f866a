"""scripts/package_default_model.py: how the model card describes a stage's training folders."""

from __future__ import annotations

import json
from pathlib import Path

from module_utils import load_repo_module


def _training_folder(root: Path, seed: int, pairs: int) -> str:
    folder = root / "train_hr"
    folder.mkdir(parents=True)
    items = [{"name": f"{i:04d}"} for i in range(pairs)]
    (folder / "synth.json").write_text(json.dumps(
        {"format": "stereosr-synthetic-pairs/1", "seed": seed, "pairs": pairs, "items": items}))
    return folder.as_posix()


def test_one_folder_and_several(tmp_path: Path) -> None:
    pkg = load_repo_module("scripts/package_default_model.py")
    first = _training_folder(tmp_path / "data", seed=0, pairs=3)
    second = _training_folder(tmp_path / "data" / "extra_s1000", seed=1000, pairs=2)

    one = pkg.synth_manifest(first)
    assert (one["pairs"], one["seed"], one["seeds"], len(one["items"])) == (3, "0", "seed", 3)
    both = pkg.synth_manifest([first, second])
    assert (both["pairs"], both["seed"], both["seeds"], len(both["items"])) == (
        5, "0 and 1000", "seeds", 5)

    third = _training_folder(tmp_path / "data" / "extra_s2000", seed=2000, pairs=1)
    assert pkg.synth_manifest([first, second, third])["seed"] == "0, 1000 and 2000"

    data = (tmp_path / "data").as_posix()
    assert pkg.build_commands(one) == (
        f"`python scripts/build_training_set.py --out {data} --pillow-sdist PILLOW_SDIST`")
    assert pkg.build_commands(both) == (
        f"`python scripts/build_training_set.py --out {data} --pillow-sdist PILLOW_SDIST`, "
        f"`python scripts/build_training_set.py --out {data}/extra_s1000 --seed 1000 --val-pairs 1`")


def test_a_folder_without_a_manifest(tmp_path: Path) -> None:
    pkg = load_repo_module("scripts/package_default_model.py")
    first = _training_folder(tmp_path / "data", seed=0, pairs=1)
    bare = tmp_path / "photos_only"
    bare.mkdir()
    assert pkg.synth_manifest([first, bare.as_posix()]) is None


def test_a_recorded_build_command_is_used(tmp_path: Path) -> None:
    """A folder whose synth.json records its build command is rebuilt with that command; the
    validation and training folders of one call are named once."""
    pkg = load_repo_module("scripts/package_default_model.py")
    first = _training_folder(tmp_path / "data", seed=0, pairs=1)
    small = _training_folder(tmp_path / "data" / "extra_small", seed=3000, pairs=1)
    command = ("python scripts/build_training_set.py --out data/extra_small --photos "
               "data/photos_small --photos-only --seed 3000 --val-pairs 0")
    doc = json.loads((Path(small) / "synth.json").read_text())
    (Path(small) / "synth.json").write_text(json.dumps({**doc, "command": command}))
    data = (tmp_path / "data").as_posix()
    assert pkg.build_commands(pkg.synth_manifest([first, small])) == (
        f"`python scripts/build_training_set.py --out {data} --pillow-sdist PILLOW_SDIST`, "
        f"`{command}`")
    val = _training_folder(tmp_path / "data" / "extra_small" / "val", seed=3001, pairs=1)
    doc = json.loads((Path(val) / "synth.json").read_text())
    (Path(val) / "synth.json").write_text(json.dumps({**doc, "command": command}))
    assert pkg.build_commands(pkg.synth_manifest([small, val])) == f"`{command}`"


def test_checkpoint_averaging_is_the_plain_mean(tmp_path: Path) -> None:
    """``--average``: the packaged weights are the elementwise mean of the checkpoints, each
    listed with its config and iteration; a checkpoint of another net is refused."""
    import pytest
    import torch

    from stereosr.models.checkpoint import load_model, save_model
    from stereosr.models.nafssr import NAFSSR, NAFSSRConfig

    pkg = load_repo_module("scripts/package_default_model.py")
    torch.manual_seed(0)
    nets = [NAFSSR(NAFSSRConfig(width=4, num_blocks=2)) for _ in range(3)]
    files = []
    for k, net in enumerate(nets):
        files.append(save_model(net, tmp_path / f"w{k}.safetensors",
                                {"train_config": f"stage{k}", "trained_iterations": 100 * k}))
    model = load_model(files[0], device="cpu")
    records = pkg.average_checkpoints(model, files[1:])
    assert [(r["config"], r["iterations"]) for r in records] == [("stage1", 100), ("stage2", 200)]
    for name, p in model.state_dict().items():
        expect = sum(net.state_dict()[name] for net in nets) / 3
        torch.testing.assert_close(p, expect, rtol=0, atol=1e-6)
    other = save_model(NAFSSR(NAFSSRConfig(width=4, num_blocks=3)), tmp_path / "deep.safetensors",
                       {"trained_iterations": 5})
    with pytest.raises(SystemExit, match="another net"):
        pkg.average_checkpoints(load_model(files[0], device="cpu"), [other])
    state = tmp_path / "state.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in nets[1].state_dict().items()}, str(state))
    with pytest.raises(SystemExit, match="no iteration count"):
        pkg.average_checkpoints(load_model(files[0], device="cpu"), [state])


def test_photos_named_by_resolution_keep_one_entry_each() -> None:
    pkg = load_repo_module("scripts/package_default_model.py")
    paths = ["/usr/share/wallpapers/BytheWater/contents/images/2560x1600.jpg",
             "/usr/share/wallpapers/ColdRipple/contents/images/2560x1600.jpg",
             "/usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg",
             "/data/photos/1920x1080.png"]
    labels = {pkg.photo_label(p) for p in paths}
    assert labels == {"BytheWater/2560x1600.jpg", "ColdRipple/2560x1600.jpg",
                      "Bridge_by_Sander_Klootwijk.jpg", "photos/1920x1080.png"}
    # An earlier file that collapsed them into one bare name: the bare name gives way; its
    # other photos stay.
    merged = pkg.merged_photo_labels(labels, ["2560x1600.jpg", "old.jpg", "1920x1080.png"])
    assert merged == sorted(labels | {"old.jpg"})
