#!/usr/bin/env python3
"""Package a finished training run as the project's default model.

Reads the run folder of ``stereosr train`` (config, log, exported EMA weights), scores the model
on the held-out validation pairs (synthetic pairs, and the real stereo pairs named ``real-*``
with and without the self-ensemble) and, as a final report only, on the Middlebury Motorcycle
test pair (x4, MATLAB-bicubic LR), then writes the weights with provenance metadata into the
package and a model card beside them. A run that started from a packaged model
(``model.init``) lists that model's stages before its own.

    python scripts/package_default_model.py --run training_runs/stereosr_x4_v2 \
        --weights model_best.safetensors --overwrite
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from stereosr.data.pairs import find_pairs
from stereosr.demo import run_demo
from stereosr.evaluate import evaluate_model, load_eval_pair
from stereosr.models.checkpoint import load_model, read_checkpoint, save_model
from stereosr.models.registry import DEFAULT_MODEL, MODELS, resolve_name

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "src" / "stereosr" / "configs"
EARLIER_SETS = (" Earlier stages trained on sets built the same way before some of these "
                "photographs were added (docs/data.md).")


def load_model_path(name: str) -> Path:
    """Path of a checkpoint given as a file or a registered model name."""
    p = Path(name)
    if p.is_file():
        return p
    resolved = resolve_name(name)
    if resolved is None:
        raise SystemExit(f"model.init {name}: not a file or a registered model name")
    return Path(resolved)


# A file name that is only a resolution, as in KDE Plasma wallpaper themes
# (<theme>/contents/images/2560x1600.jpg): several photos share it.
RESOLUTION_NAME = re.compile(r"^\d+x\d+\.\w+$")


def photo_label(path: str) -> str:
    """How the card's ``training_photos`` names a photo: its file name, or ``theme/name`` when
    the name is only a resolution, so photos that share one keep one entry each."""
    p = Path(path)
    if not RESOLUTION_NAME.match(p.name):
        return p.name
    theme = next((q.name for q in p.parents if q.name not in ("", "images", "contents")), "")
    return f"{theme}/{p.name}" if theme else p.name


def merged_photo_labels(stage: set[str], earlier: list[str]) -> list[str]:
    """This stage's photo labels joined with an earlier file's: an earlier bare resolution
    name (files packaged before photo_label) gives way to this stage's ``theme/name`` ones."""
    qualified = {label.rsplit("/", 1)[1] for label in stage if "/" in label}
    return sorted(stage | {n for n in earlier if n not in qualified})


# Per-stage data options recorded in the packaged metadata, with their defaults.
STAGE_DATA_OPTIONS = {"patch_tries": 1, "view_gain": 0.0, "view_shift": 0,
                      "view_shift_prob": None}


def synth_manifest(train_root: str | list[str]) -> dict[str, Any] | None:
    """The synth.json of a training folder, or of several merged (pairs summed, items joined);
    None when a folder has none."""
    roots = [train_root] if isinstance(train_root, str) else list(train_root)
    parts = [Path(r) / "synth.json" for r in roots]
    if not all(p.is_file() for p in parts):
        return None
    docs = [json.loads(p.read_text()) for p in parts]
    seeds = [str(d["seed"]) for d in docs]
    return {"pairs": sum(d["pairs"] for d in docs), "items": [it for d in docs for it in d["items"]],
            "seed": " and ".join([", ".join(seeds[:-1]), seeds[-1]] if len(seeds) > 2 else seeds),
            "seeds": "seeds" if len(seeds) > 1 else "seed",
            "folders": [(root, d["seed"], d.get("command")) for root, d in zip(roots, docs)]}


def build_commands(manifest: dict[str, Any]) -> str:
    """The ``build_training_set.py`` calls that rebuild the training folders of a
    :func:`synth_manifest`, as the card writes them: the command a folder's synth.json records,
    or for folders built before it recorded one, the first folder with the real validation
    pairs and any others with their seed."""
    calls = []
    for i, (root, seed, command) in enumerate(manifest["folders"]):
        if command is None:
            command = f"python scripts/build_training_set.py --out {Path(root).parent.as_posix()}"
            if seed != 0:
                command += f" --seed {seed}"
            command += " --pillow-sdist PILLOW_SDIST" if i == 0 else " --val-pairs 1"
        if f"`{command}`" not in calls:  # the validation and training folders of one call
            calls.append(f"`{command}`")
    return ", ".join(calls)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _loss_text(cfg: dict) -> str:
    """A stage's loss terms as the card writes them: ``L1``, ``MSE``, ``L1 + 0.01 perceptual``."""
    names = {"l1": "L1", "mse": "MSE"}
    if not cfg["loss"]["terms"]:
        return "unrecorded"
    parts = []
    for t in cfg["loss"]["terms"]:
        w = t.get("weight", 1.0)
        name = names.get(t["type"], t["type"])
        parts.append(name if w == 1.0 else f"{w:g} {name}")
    return " + ".join(parts)


def average_checkpoints(model: torch.nn.Module, files: list[Path]) -> list[dict[str, Any]]:
    """Replace ``model``'s weights by the equal mean of its own and those of ``files``
    (checkpoint averaging with ``torch.optim.swa_utils.AveragedModel``); returns, per file,
    its path, the config that trained it and its iteration (from its metadata).

    Raises:
        SystemExit: a file holds another net (width, blocks, scale) than ``model``.
    """
    from torch.optim.swa_utils import AveragedModel

    mean = AveragedModel(model)
    mean.update_parameters(model)
    records = []
    for f in files:
        meta = read_checkpoint(f)[1]
        if "trained_iterations" not in meta:
            raise SystemExit(f"--average: {f} records no iteration count (a training state?); "
                             "average exported weights such as a run's model_best.safetensors")
        other = load_model(f, device="cpu")
        if other.config != model.config:
            raise SystemExit(f"--average: {f} holds another net ({other.config}) than the "
                             f"packaged weights ({model.config})")
        mean.update_parameters(other)
        records.append({"weights": Path(f).as_posix(), "config": meta.get("train_config"),
                        "iterations": int(meta.get("trained_iterations", 0))})
    model.load_state_dict(mean.module.state_dict())
    return records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "stereosr_x4")
    ap.add_argument("--weights", default="model_final.safetensors",
                    help="file in the run folder to package")
    ap.add_argument("--previous", type=Path, nargs="*", default=[],
                    help="run folders of earlier stages this run started from, oldest first; "
                         "each counts up to the weights the next stage started from when they "
                         "are the run's own (a stage stopped early), else up to its model_final")
    ap.add_argument("--earlier-stages", default=None,
                    help="packaged model whose recorded stages came before this run (default: "
                         "the run's model.init; needed when that is a run's checkpoint, which "
                         "records no stages)")
    ap.add_argument("--average", type=Path, nargs="*", default=[],
                    help="weights of other checkpoints of the same net (earlier stages of this "
                         "run's line) to average with --weights, all weighted equally")
    ap.add_argument("--val", type=Path, default=ROOT / "data" / "val_hr")
    ap.add_argument("--test", type=Path, default=ROOT / "data" / "test_heldout",
                    help="held-out real test pairs (scripts/fetch_test_pairs.py), scored for the "
                         "card only; skipped when the folder is missing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    run = args.run
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    src = run / args.weights
    _, run_meta = read_checkpoint(src)
    train_log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    iters = int(run_meta.get("trained_iterations", max(r.get("iter", 0) for r in train_log)))
    def run_hours(folder: Path, weights: Path, upto: int) -> float:
        """Training time from the log (iterations / it/s of each record) up to the iteration
        the weights were saved at, which leaves out the pauses between the sessions of a
        resumed run and the iterations after a best checkpoint; wall time when there is no log."""
        log = folder / "log.jsonl"
        if log.is_file():
            recs = [json.loads(x) for x in log.read_text().splitlines()]
            train = [r for r in recs if r.get("kind") == "train" and r.get("it_s")
                     and r["iter"] <= upto]
            last = 0
            secs = 0.0
            for r in train:  # a resume from an earlier checkpoint logs iterations again
                secs += max(r["iter"] - last, 0) / float(r["it_s"])
                last = max(r["iter"], last)
            if train:
                return secs / 3600
        return (weights.stat().st_mtime - (folder / "config.yaml").stat().st_ctime) / 3600

    if run_meta.get("trained_iterations") is None:
        iters = max(r.get("iter", 0) for r in train_log if r.get("kind") == "train")
    hours = run_hours(run, src, iters)
    stages = []
    init_photos: list[str] = []
    init_meta: dict[str, str] = {}
    start = cfg["model"].get("init")
    start_meta = read_checkpoint(load_model_path(start))[1] if start else {}

    def grown(meta: dict[str, str]) -> tuple[int, int] | None:
        """(blocks before, blocks after) when ``meta`` is a scripts/grow_depth.py output."""
        if not meta.get("grow_factor"):
            return None
        return int(meta["num_blocks"]) // int(meta["grow_factor"]), int(meta["num_blocks"])

    def growth_of(stage_cfg: dict[str, Any]) -> tuple[int, int] | None:
        """Growth of an earlier stage, from its config's init file. Only a file counts: a
        registered name means whatever is packaged now, not what that stage started from."""
        stage_init = (stage_cfg.get("model") or {}).get("init")
        if not stage_init or not (ROOT / stage_init).is_file():
            return None
        return grown(read_checkpoint(ROOT / stage_init)[1])

    def recorded_config(name: str) -> dict[str, Any]:
        """The shipped config of an earlier stage recorded by name ({} when not shipped)."""
        stage_cfg = CONFIGS / f"{name}.yaml"
        return yaml.safe_load(stage_cfg.read_text()) if stage_cfg.is_file() else {}

    init = args.earlier_stages or start
    if init:  # stages of the packaged model this run continued
        init_meta = (read_checkpoint(load_model_path(args.earlier_stages))[1]
                     if args.earlier_stages else start_meta)
        for st in json.loads(init_meta.get("stages", "[]")):
            if st["config"] == cfg["name"]:
                continue  # this run itself, when the packaged model already came from it
            # every recorded stage after the first continued from the one before it
            shipped = recorded_config(st["config"])
            stages.append(({"name": st["config"], "optim": {"lr": st["lr"]},
                            "model": {"init": "previous" if stages else None},
                            "training_pairs": st.get("training_pairs"),
                            "grown": growth_of(shipped),
                            "loss": {"terms": st.get("loss_terms")
                                     or shipped.get("loss", {}).get("terms")},
                            "data": {k: st.get(k) or shipped.get("data", {}).get(k, default)
                                     for k, default in STAGE_DATA_OPTIONS.items()}},
                           int(st["iterations"]), float(st["hours"])))
        init_photos = json.loads(init_meta.get("training_photos", "[]"))
    for i, prev in enumerate(args.previous):
        p_cfg = yaml.safe_load((prev / "config.yaml").read_text())
        # the weights the next stage started from, when they are this run's (a run stopped
        # before its end, or a best checkpoint), else the run's final weights
        next_cfg = (yaml.safe_load((args.previous[i + 1] / "config.yaml").read_text())
                    if i + 1 < len(args.previous) else cfg)
        next_init = (next_cfg.get("model") or {}).get("init")
        p_w = prev / "model_final.safetensors"
        if next_init and prev.resolve() in (ROOT / next_init).resolve().parents:
            p_w = ROOT / next_init
        p_meta = read_checkpoint(p_w)[1]
        if p_w.name != "model_final.safetensors" and "trained_iterations" not in p_meta:
            raise SystemExit(f"--previous {prev}: {p_w} records no iteration count; start the "
                             "next stage from the run's model_best.safetensors or model_final")
        p_iters = int(p_meta.get("trained_iterations", 0))
        p_cfg["grown"] = growth_of(p_cfg)
        p_synth = synth_manifest(p_cfg["data"]["train_root"])
        if p_synth is not None:
            p_cfg["training_pairs"] = p_synth["pairs"]
        stages.append((p_cfg, p_iters, run_hours(prev, p_w, p_iters or 1 << 62)))
    stages.append((cfg, iters, hours))
    total_iters = sum(n for _, n, _ in stages)
    total_hours = sum(h for _, _, h in stages)
    synth = synth_manifest(cfg["data"]["train_root"])
    if synth is None:
        raise SystemExit(f"no synth.json in {cfg['data']['train_root']}: not a training set "
                         "of scripts/build_training_set.py")
    photo_paths = sorted({it["photo"] for it in synth["items"]})
    n_photos = len(photo_paths)  # by path: some packages name their photos by resolution
    stage_photos = {photo_label(p) for p in photo_paths}
    photos = merged_photo_labels(stage_photos, init_photos)
    cfg["training_pairs"] = synth["pairs"]
    cfg["grown"] = grown(start_meta)
    # Earlier stages trained on sets built before some of this stage's photos were added: seen
    # here, or recorded by the packaging of the earlier stages (a file without the flag says so
    # in its training_data), so packaging a later stage or the same run again keeps the fact.
    recorded_smaller = (init_meta.get("earlier_sets_smaller") == "true"
                        or EARLIER_SETS.strip() in init_meta.get("training_data", ""))
    earlier_smaller = len(stages) > 1 and bool(init_photos) and (
        recorded_smaller or not all(label in init_photos or label.rsplit("/", 1)[-1] in init_photos
                                    for label in stage_photos))
    earlier_sets = EARLIER_SETS if earlier_smaller else ""
    if any("motorcycle" in p.lower() for p in photos):
        raise SystemExit("refusing: the training photos include a motorcycle file")

    model = load_model(src, device="cpu")
    averaged: list[dict[str, Any]] = []
    if args.average:
        named = [src.resolve(), *(Path(f).resolve() for f in args.average)]
        if len(set(named)) != len(named):
            raise SystemExit("--average: a checkpoint is named twice (or is --weights itself); "
                             "name each once")
        averaged = average_checkpoints(model, args.average)
        averaged.append({"weights": src.as_posix(), "config": cfg["name"], "iterations": iters})
    val_files = find_pairs(args.val)
    real_files = [f for f in val_files if f.name.startswith("real-")]
    synth_files = [f for f in val_files if not f.name.startswith("real-")]
    val_photos = json.loads((args.val / "synth.json").read_text())["items"]
    n_val_photos = len({it["photo"] for it in val_photos})
    t0 = time.perf_counter()
    val = evaluate_model(model, (load_eval_pair(f, 4) for f in synth_files)).mean()
    real = real_se = None
    if real_files:
        real = evaluate_model(model, (load_eval_pair(f, 4) for f in real_files)).mean()
        real_se = evaluate_model(model, (load_eval_pair(f, 4) for f in real_files),
                                 bicubic=False,
                                 upscale_kwargs={"self_ensemble": True}).mean()
    val_s = time.perf_counter() - t0
    test_groups: dict[str, dict[str, Any]] = {}
    if args.test.is_dir():  # held-out real pairs: scored for the card, never used to choose
        groups = {"Middlebury 2006 (Rocks2, Aloe)": ("rocks2", "aloe"),
                  "OAK-D indoor pairs (grey, sensor noise)": ("oakd_",)}
        for label, prefixes in groups.items():
            files = [f for f in find_pairs(args.test) if f.name.startswith(prefixes)]
            if files:
                res = evaluate_model(model, (load_eval_pair(f, 4) for f in files)).mean()
                test_groups[label] = {"pairs": [f.name for f in files],
                                      "bicubic": res["bicubic"]["stereo"],
                                      "model": res["model"]["stereo"]}
    demo = run_demo(model).scores()
    demo_se = run_demo(model, self_ensemble=True).scores()
    scores = {
        "motorcycle_x4": {
            "bicubic": demo["bicubic"]["stereo"],
            "model": demo["model"]["stereo"],
            "model_self_ensemble": demo_se["model"]["stereo"],
            "left_protocol": {"bicubic": demo["bicubic"]["left"], "model": demo["model"]["left"]},
        },
        "validation_x4": {"pairs": len(synth_files), "bicubic": val["bicubic"]["stereo"],
                          "model": val["model"]["stereo"]},
    }
    if test_groups:
        scores["heldout_test_x4"] = test_groups
    if real is not None and real_se is not None:
        scores["real_validation_x4"] = {
            "pairs": [f.name for f in real_files], "bicubic": real["bicubic"]["stereo"],
            "model": real["model"]["stereo"], "model_self_ensemble": real_se["model"]["stereo"]}
    # Stages may have run on other machines: keep the CPUs the earlier file names.
    cpus = [c for c in init_meta.get("hardware", "").split(", ")[0].split(" and ") if c]
    cpus = list(dict.fromkeys([*cpus, cpu_name()]))
    hardware = (f"{' and '.join(cpus)}, {os.cpu_count()} cores, no GPU; torch {torch.__version__}"
                ", 1 or 2 threads, shared with other work")
    losses = [t["type"] for t in cfg["loss"]["terms"]]
    meta = {
        "name": DEFAULT_MODEL,
        "training_data": (f"{synth['pairs']} synthetic stereo pairs (scripts/build_training_set.py"
                          f", {synth['seeds']} {synth['seed']}) rendered from {n_photos} photographs "
                          "(Debian wallpaper and photo packages, mvtb-data, scikit-image "
                          "samples); disparity 0-60 px with occlusions; MATLAB-bicubic x4 LR; "
                          "no Motorcycle or other Middlebury data." + earlier_sets),
        "training_photos": photos,
        "earlier_sets_smaller": "true" if earlier_smaller else "false",
        "iterations": total_iters,
        "stages": [{"config": c["name"], "iterations": n, "lr": c["optim"]["lr"],
                    "hours": round(h, 2), "training_pairs": c.get("training_pairs"),
                    "loss_terms": c["loss"]["terms"],
                    **{k: c["data"].get(k, default) for k, default in STAGE_DATA_OPTIONS.items()}}
                   for c, n, h in stages],
        "batch_size": cfg["data"]["batch_size"],
        "lr_patch": cfg["data"]["lr_patch"],
        "training_hours": round(total_hours, 2),
        "hardware": hardware,
        "losses": losses,
        "optimizer": cfg["optim"],
        "schedule": cfg["schedule"],
        "ema_decay": cfg["train"]["ema_decay"],
        "train_config": cfg["name"],
        "weights": run_meta.get("weights", "ema"),
        "averaged_checkpoints": averaged,
        "scores": scores,
        "date": time.strftime("%Y-%m-%d"),
    }
    out = MODELS[DEFAULT_MODEL].path
    save_model(model, out, meta, overwrite=args.overwrite,
               train_size=tuple(cfg["data"]["lr_patch"]))

    m = scores["motorcycle_x4"]
    v = scores["validation_x4"]
    rv = scores.get("real_validation_x4")
    real_rows = ""
    if rv is not None:
        rg = rv["model"]["psnr"] - rv["bicubic"]["psnr"]
        rg_se = rv["model_self_ensemble"]["psnr"] - rv["bicubic"]["psnr"]
        real_rows = (
            f"| real stereo pairs ({len(rv['pairs'])} rectified Pillow MPO files) | "
            f"{rv['bicubic']['psnr']:.2f} / {rv['bicubic']['ssim']:.4f} | "
            f"{rv['model']['psnr']:.2f} / {rv['model']['ssim']:.4f} | {rg:+.2f} dB |\n"
            f"| real stereo pairs, with `--self-ensemble` | | "
            f"{rv['model_self_ensemble']['psnr']:.2f} / {rv['model_self_ensemble']['ssim']:.4f}"
            f" | {rg_se:+.2f} dB |\n")
    test_rows = "".join(
        f"| held-out: {label}, {len(t['pairs'])} pairs | {t['bicubic']['psnr']:.2f} / "
        f"{t['bicubic']['ssim']:.4f} | {t['model']['psnr']:.2f} / {t['model']['ssim']:.4f} | "
        f"{t['model']['psnr'] - t['bicubic']['psnr']:+.2f} dB |\n"
        for label, t in test_groups.items())
    gain = m["model"]["psnr"] - m["bicubic"]["psnr"]
    gain_se = m["model_self_ensemble"]["psnr"] - m["bicubic"]["psnr"]
    params = sum(p.numel() for p in model.parameters())
    stage_lines = "\n".join(
        f"  - `src/stereosr/configs/{c['name']}.yaml`: {n} iterations, peak lr {c['optim']['lr']}"
        + ((f", grown from {c['grown'][0]} to {c['grown'][1]} blocks "
            "(`scripts/grow_depth.py`) from the previous stage's EMA weights")
           if c.get("grown") else
           ", starting from the previous stage's EMA weights" if c["model"].get("init") else "")
        + (f"; {c['training_pairs']} training pairs" if c.get("training_pairs") else "")
        + f"; {_loss_text(c)} loss"
        + (f"; textured crops (most textured of {c['data']['patch_tries']} windows)"
           if c["data"].get("patch_tries", 1) > 1 else "")
        + (f"; right views with their own exposure and colour gains (up to "
           f"{100 * c['data']['view_gain']:g} %)" if c["data"].get("view_gain", 0) else "")
        + (f"; right views moved up or down by up to {c['data']['view_shift']} HR row(s)"
           + (f" in {100 * c['data']['view_shift_prob']:g} % of samples"
              if c["data"].get("view_shift_prob") else "")
           if c["data"].get("view_shift", 0) else "")
        for c, n, _ in stages)
    stage_losses = list(dict.fromkeys(_loss_text(c) for c, _, _ in stages))
    loss_recipe = (f"{stage_losses[0]} loss" if len(stage_losses) == 1 else
                   " loss, then ".join(stage_losses) + " loss in the later stages (below)")
    growth = [(c["name"], c["grown"]) for c, _, _ in stages if c.get("grown")]
    grown_steps = ", then ".join(
        f"stage `{name}` made the trained {before}-block net {after // before}x deeper"
        for name, (before, after) in growth)
    grown_text = "" if not growth else "\n" + textwrap.fill(
        f"{grown_steps[0].upper()}{grown_steps[1:]}, with `scripts/grow_depth.py`. Each "
        "trained block is followed by a new one whose residual scales start at zero, so training "
        "went on from the same outputs with more depth to use. A deep net trained from scratch "
        "is slower to get anywhere on a CPU (the 15-minute comparison above); grown late, the "
        "extra depth pays (docs/training.md compares it with another cycle of the 8-block net).",
        width=95, break_on_hyphens=False) + "\n"
    averaged_text = "" if not averaged else "\n- Shipped weights: the equal mean (checkpoint " \
        "averaging, `torch.optim.swa_utils.AveragedModel`) of the EMA weights of " + ", ".join(
            f"`{a['config']}` at {a['iterations']} iterations" for a in averaged) + \
        " (`scripts/package_default_model.py --average`)."
    card = f"""# Model card: `{DEFAULT_MODEL}`

The default model of stereosr: `stereosr upscale` and `stereosr demo` use it when no
`--weights` is given. File: `{out.name}` (safetensors, {out.stat().st_size / 1e6:.2f} MB, fp32,
the metadata in the file repeats this card).

## Architecture

NAFSSR (official layout and state-dict keys), x4, width {model.config.width},
{model.config.num_blocks} stereo blocks, {params:,} parameters: a compact sibling of NAFSSR-T
(width 48, 16 blocks), chosen by measured quality per hour of CPU training: trained from
scratch with the same recipe for 15 minutes on one thread of this machine
(`bash benchmarks/quality_per_hour.sh 15`), the width-32, 8-block net ran 1932 iterations and reached 27.41 dB
on the validation pairs, NAFSSR-T 657 iterations and 26.97 dB (about 3x fewer steps per hour:
0.7 against 2.1 iterations/s at batch 4). T may overtake it after many more hours; a CPU
day does not get there. On a GPU the trade-off turns: NAFSSR-T runs about 4 iterations/s at batch 32
in bf16 on one H200, so the GPU recipe (`stereosr_x4_gpu`) trains T. TLC at inference with the
training patch {cfg['data']['lr_patch'][0]}x{cfg['data']['lr_patch'][1]} (window 45x135).
{grown_text}
## Training

- Data: {synth['pairs']} synthetic stereo pairs built by `scripts/build_training_set.py` ({synth['seeds']}
  {synth['seed']}) from {n_photos} photographs (Debian wallpaper and photo packages, PyPI
  mvtb-data, scikit-image sample photos; JPEGs downscaled at least x2 to remove their artefacts,
  4K photos halved, textured crops preferred; see docs/data.md). Right views are rendered
  from disparity fields (constant, planar, smooth, and layered with occlusions) of 0-60 px.{earlier_sets}
  Validation: {len(synth_files)} synthetic pairs from {n_val_photos} other photographs and
  {len(real_files)} real stereo pairs (Pillow's MPO test files, rectified). **No Motorcycle or
  other Middlebury data** was used for training or checkpoint selection, and hyper-parameters
  were set without it; checkpoints were chosen on the validation pairs.
- Recipe (trained with `stereosr train`): LR patches
  {cfg['data']['lr_patch'][0]}x{cfg['data']['lr_patch'][1]}, batch {cfg['data']['batch_size']},
  {loss_recipe}, AdamW betas {tuple(cfg['optim']['betas'])}, linear warm-up then cosine decay,
  gradient-norm clip {cfg['train']['grad_clip']}, flips with left/right swap and RGB
  permutations, EMA {cfg['train']['ema_decay']} (the EMA weights are shipped). Stages:
{stage_lines}{averaged_text}
- {total_iters} iterations in all, {total_hours:.1f} h wall time on {hardware}.

## Scores (x4, (L+R)/2 RGB PSNR / SSIM, the stereo SR protocol)

| data | bicubic | {DEFAULT_MODEL} | gain |
|---|---|---|---|
| Motorcycle (Middlebury 2014, test pair) | {m['bicubic']['psnr']:.2f} / {m['bicubic']['ssim']:.4f} | {m['model']['psnr']:.2f} / {m['model']['ssim']:.4f} | {gain:+.2f} dB |
| Motorcycle, with `--self-ensemble` | | {m['model_self_ensemble']['psnr']:.2f} / {m['model_self_ensemble']['ssim']:.4f} | {gain_se:+.2f} dB |
| validation ({v['pairs']} synthetic pairs, held-out photos) | {v['bicubic']['psnr']:.2f} / {v['bicubic']['ssim']:.4f} | {v['model']['psnr']:.2f} / {v['model']['ssim']:.4f} | {v['model']['psnr'] - v['bicubic']['psnr']:+.2f} dB |
{real_rows}{test_rows}
The held-out rows are real pairs that no training, checkpoint choice or setting looked at
(`scripts/fetch_test_pairs.py`); no self-ensemble there.

For scale: the official NAFSSR-T, trained for 400k iterations at batch 32 on 8 GPUs with
Flickr1024 + Middlebury, gains +2.92 dB over bicubic on Middlebury (29.32 vs 26.40 dB). This model
is far from that: it saw {total_iters * cfg['data']['batch_size']:,} training patches of synthetic stereo
pairs. For the best quality, load an official checkpoint (`--weights NAFSSR-S_4x.pth`), or train
on from these weights on a CPU with a new stage whose config sets `model.init: {DEFAULT_MODEL}`,
width {model.config.width} and {model.config.num_blocks} blocks (copy `{cfg['name']}` and change its
`model.init` and `run_dir`), or run
`stereosr train stereosr_x4_gpu --resume` on a GPU (docs/training.md).

## Limits

- Trained on synthetic pairs from photographs, mostly of nature with some streets, buildings and
  objects: fine text, and real camera noise or blur (not in its training degradation), are out
  of its training distribution.
- x4 only, bicubic degradation only.

Reproduce: `scripts/install_photos.sh`, {build_commands(synth)},
then `stereosr train` with each
stage's config in turn, then `python scripts/package_default_model.py --run RUN_OF_LAST_STAGE
--previous RUNS_OF_EARLIER_STAGES{" --average CHECKPOINTS" if averaged else ""} --overwrite`
(validation took {val_s:.0f} s here).
"""
    card_path = out.parent / "MODEL_CARD.md"
    card_path.write_text(card)
    print(json.dumps(scores, indent=2))
    print(f"wrote {out} and {card_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
