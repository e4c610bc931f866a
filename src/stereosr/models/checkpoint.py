"""Loading and saving NAFSSR checkpoints.

Accepted inputs:

- official ``.pth`` files: ``{"params": sd}``, ``{"params_ema": sd}``, ``{"state_dict": sd}`` or a
  bare state dict, keys with or without a ``module.`` prefix (DataParallel/DDP);
- ``.safetensors`` files (our own format, with metadata, or a bare state dict);
- the name of a registered model (see :data:`stereosr.models.registry`).

The architecture (width, blocks, scale) is derived from the tensor shapes, so a checkpoint alone
is enough. Pickled files are opened with ``torch.load(weights_only=True)`` only: nothing in a
checkpoint is ever executed. Before reading a ``.pth`` zip archive, the sizes its central
directory declares are checked against the file size (a small file declaring huge tensors is
refused before anything is allocated). Tensors must be finite, and our metadata must be
consistent (positive sizes that agree with the tensors); otherwise :class:`CheckpointError`.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError, InputError
from ..io import atomic_write_bytes
from ..runtime import resolve_device
from .nafssr import NAFSSR, NAFSSRConfig, variant_name
from .tlc import DEFAULT_TRAIN_SIZE, enable_tlc, tlc_train_size

__all__ = [
    "FORMAT_TAG",
    "check_finite",
    "check_metadata",
    "config_from_state_dict",
    "convert_checkpoint",
    "load_model",
    "model_from_state_dict",
    "read_checkpoint",
    "save_model",
    "unwrap_state_dict",
]

FORMAT_TAG = "stereosr.nafssr.v1"
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net")
#: key prefixes that wrappers add: ``module.`` (DataParallel/DDP), ``_orig_mod.``
#: (``torch.compile``), in any order
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_BODY_RE = re.compile(r"^body\.(\d+)\.")
#: torch.save stores tensors uncompressed, so a checkpoint declares about its own size; a zip
#: declaring more than this many times its file size (plus 1 MiB of slack) is a zip bomb
_MAX_EXPANSION = 16
#: globals a checkpoint of plain tensors may name (torch's rebuild functions, storages, dicts)
_DATA_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode")


def _check_declared_sizes(p: Path) -> None:
    """Refuse a zip checkpoint whose entries declare far more bytes than the file holds,
    reading only the central directory (nothing is decompressed or allocated)."""
    try:
        with zipfile.ZipFile(p) as zf:
            declared = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch.load reports a damaged archive
    size = p.stat().st_size
    if declared > _MAX_EXPANSION * size + (1 << 20):
        raise CheckpointError(
            f"{p}: refused: the {size:,}-byte file declares {declared:,} bytes of data (more "
            f"than {_MAX_EXPANSION}x its size, as a zip bomb does); torch.save never writes "
            "such files. Re-save the state dict or use .safetensors")


def _pickled_globals(p: Path) -> list[str]:
    """``module.name`` of every global the pickle streams of ``p`` would import, found by
    reading opcodes with :mod:`pickletools` (nothing is imported or run)."""
    streams: list[bytes] = []
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as zf:
            streams = [zf.read(i) for i in zf.infolist()
                       if i.filename.endswith(".pkl") and i.file_size < (64 << 20)]
    else:  # a plain pickle, or the legacy format: several pickles, then raw tensor data
        with open(p, "rb") as fh:
            streams = [fh.read(64 << 20)]
    names: list[str] = []
    for data in streams:
        buf = io.BytesIO(data)
        while buf.tell() < len(data):
            strings: list[str] = []
            try:
                for op, arg, _ in pickletools.genops(buf):
                    if op.name in ("GLOBAL", "INST"):
                        names.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL":
                        names.append(".".join(strings[-2:]) if len(strings) >= 2 else "?")
                    elif isinstance(arg, str):
                        strings.append(arg)
            except (ValueError, EOFError, UnicodeDecodeError):  # past the last pickle
                break
    return names


def _refuse_unpicklable(p: Path) -> CheckpointError:
    """The error for a pickle that ``torch.load(weights_only=True)`` refused."""
    try:
        foreign = [n for n in _pickled_globals(p) if not n.startswith(_DATA_GLOBALS)]
    except (OSError, zipfile.BadZipFile, ValueError):
        foreign = []
    if not foreign:
        return CheckpointError(f"{p}: not a readable PyTorch checkpoint (corrupt or foreign "
                               "pickle data)")
    return CheckpointError(
        f"{p}: refused: the file holds pickled code or objects beyond tensors "
        f"({', '.join(dict.fromkeys(foreign))}); stereosr never executes pickled code. Re-save "
        "only the state dict (torch.save({'params': model.state_dict()}, path)) or use "
        ".safetensors")


def check_finite(sd: Mapping[str, Tensor], source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming the tensors of ``sd`` that hold NaN or Inf, or
    values that become infinite in float32 (the precision the model runs in; e.g. 1e300 in a
    float64 tensor)."""
    bad = [k for k, v in sd.items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    over = [k for k, v in sd.items() if k not in bad and v.is_floating_point()
            and v.dtype != torch.float32 and not bool(torch.isfinite(v.float()).all())]
    if bad or over:
        names = bad + over
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        what = ("hold NaN or infinite values" if not over else
                "hold values beyond float32's range (infinite once loaded)" if not bad else
                "hold NaN, infinite or beyond-float32 values")
        raise CheckpointError(
            f"{source}: {len(names)} tensor(s) {what} ({', '.join(names[:3])}{more}); the "
            "weights are broken (a diverged training run?): use another checkpoint")


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Read a checkpoint file safely; returns (raw object as dict, safetensors metadata)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint file not found")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a folder, expected a checkpoint file")
    with open(p, "rb") as fh:
        head = fh.read(16)
    # By content first: a torch.save archive (zip) or pickle named .safetensors is read as
    # what it is, not reported as a broken safetensors header.
    # A safetensors file starts with its JSON header's length (8 bytes, little-endian), then
    # "{"; the length's first byte may be 0x80, like a pickle's first byte.
    safetensors_file = len(head) >= 9 and head[8:9] == b"{" and \
        int.from_bytes(head[:8], "little") < p.stat().st_size
    torch_file = not safetensors_file and (head[:4] == b"PK\x03\x04" or head[:1] == b"\x80")
    if not torch_file and (p.suffix == ".safetensors" or safetensors_file):
        from safetensors import SafetensorError, safe_open

        try:
            tensors: dict[str, Any] = {}
            with safe_open(str(p), framework="pt", device="cpu") as fh:
                meta = dict(fh.metadata() or {})
                for key in fh.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                    tensors[key] = fh.get_tensor(key)
            return tensors, meta
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{p}: not a readable safetensors file ({exc})") from None
    _check_declared_sizes(p)
    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols is not for users
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            # An open file, not the path: torch.load treats a path ending in .safetensors as
            # safetensors, whatever the file holds.
            with open(p, "rb") as fh:
                obj = torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise _refuse_unpicklable(p) from None
    except Exception as exc:  # noqa: BLE001 (any other decoding failure: a corrupt or foreign file)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{p}: not a readable PyTorch checkpoint ({msg[:200]})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p}: checkpoint holds a {type(obj).__name__}, expected a dict "
                              "of tensors")
    return dict(obj), {}


def unwrap_state_dict(obj: Mapping[str, Any], key: str | None = None) -> dict[str, Tensor]:
    """Find the state dict inside a checkpoint dict and strip ``module.`` (DataParallel/DDP)
    and ``_orig_mod.`` (``torch.compile``) prefixes.

    ``key`` picks a wrapper entry (e.g. 'params'); by default 'params_ema' is preferred over
    'params', then 'state_dict', 'model', 'net', then the dict itself.
    """
    sd: Any = obj
    if key is not None:
        flat = {n[len(key) + 1:]: v for n, v in obj.items() if n.startswith(key + ".")}
        if key not in obj and not flat:
            raise CheckpointError(f"checkpoint has no entry {key!r}; it has {sorted(obj)[:8]}")
        sd = obj.get(key, flat)
    else:
        for k in _WRAPPER_KEYS:
            if k in obj and isinstance(obj[k], Mapping):
                sd = obj[k]
                break
        else:
            # Flat files (safetensors training checkpoints): "params_ema.<key>", "params.<key>".
            for k in _WRAPPER_KEYS:
                prefix = k + "."
                nested = {n[len(prefix):]: v for n, v in obj.items() if n.startswith(prefix)}
                if nested:
                    sd = nested
                    break
    if not isinstance(sd, Mapping):
        raise CheckpointError("checkpoint does not contain a state dict")
    out: dict[str, Tensor] = {}
    for k, v in sd.items():
        if not isinstance(v, Tensor):
            continue
        name = k
        while name.startswith(_WRAPPER_PREFIXES):  # DataParallel/DDP, torch.compile
            name = name.split(".", 1)[1]
        out[name] = v
    if not out:
        raise CheckpointError(_no_tensors_message(obj, sd))
    return out


def _no_tensors_message(obj: Mapping[str, Any], sd: Any) -> str:
    def holds_tensors(v: Any) -> bool:
        return isinstance(v, Mapping) and any(isinstance(t, Tensor) for t in v.values())

    top = (", ".join(repr(str(k)) for k in list(obj)[:12]) + (", ..." if len(obj) > 12 else "")
           if obj else "(none: the dict is empty)")
    where = f"under {', '.join(_WRAPPER_KEYS)}, or at the top level"
    if sd is not obj:
        inner = next(k for k, v in obj.items() if v is sd)
        where = f"under {inner!r}, where it looked"
    holders = [str(k) for k, v in obj.items() if holds_tensors(v)]
    if len(holders) == 1:
        hint = f"pass key={holders[0]!r} to use the tensors under it"
    elif holders:
        hint = f"pass key= one of {', '.join(map(repr, holders))}"
    else:
        hint = "pass key= naming the entry that holds the state dict"
    return f"checkpoint holds no tensors {where}; its top-level keys are {top}: {hint}"


def config_from_state_dict(sd: Mapping[str, Tensor]) -> NAFSSRConfig:
    """Derive width, block count, input channels and scale from NAFSSR tensor shapes."""
    needed = ["intro.weight", "up.0.weight", "body.0.module.blk.conv1.weight",
              "body.0.module.fusion.l_proj1.weight"]
    missing = [k for k in needed if k not in sd]
    if missing:
        sample = ", ".join(sorted(sd)[:5])
        raise CheckpointError(
            f"not a NAFSSR state dict: missing {', '.join(missing)} (found keys like {sample})")
    width, in_ch = int(sd["intro.weight"].shape[0]), int(sd["intro.weight"].shape[1])
    blocks = 1 + max(int(m.group(1)) for k in sd if (m := _BODY_RE.match(k)))
    up_out = int(sd["up.0.weight"].shape[0])
    scale = round((up_out / in_ch) ** 0.5)
    if scale * scale * in_ch != up_out:
        raise CheckpointError(f"up.0.weight has {up_out} output channels, which is not "
                              f"{in_ch} x scale^2 for any integer scale")
    try:
        return NAFSSRConfig(width=width, num_blocks=blocks, scale=scale, in_channels=in_ch)
    except ValueError as exc:
        raise CheckpointError(f"unsupported NAFSSR shape: {exc}") from None


def model_from_state_dict(sd: Mapping[str, Tensor], drop_path: float = 0.0, *,
                          source: str = "checkpoint") -> NAFSSR:
    """Build a NAFSSR matching ``sd`` and load it strictly (in train/eval state as built).

    Raises :class:`CheckpointError` (naming ``source``) for non-finite tensors, missing or
    unexpected keys and shape mismatches.
    """
    check_finite(sd, source)
    odd = [f"{k} ({v.dtype})" for k, v in sd.items() if not v.is_floating_point()]
    if odd:
        raise CheckpointError(
            f"{source}: NAFSSR weights are floating point, but {len(odd)} tensor(s) are not "
            f"({', '.join(odd[:3])}{' ...' if len(odd) > 3 else ''}); their values would be "
            "cast silently: use the original checkpoint")
    try:
        cfg = config_from_state_dict(sd)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    if drop_path:
        cfg = NAFSSRConfig(**{**cfg.to_dict(), "drop_path": drop_path})  # type: ignore[arg-type]
    model = NAFSSR(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys ({', '.join(missing[:4])}...)")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys ({', '.join(unexpected[:4])}...)")
        raise CheckpointError(f"{source}: state dict does not match NAFSSR: "
                              + "; ".join(parts))
    bad = [k for k, v in expected.items() if tuple(v.shape) != tuple(sd[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{source}: shape mismatch for {k}: checkpoint {tuple(sd[k].shape)}, model "
                              f"{tuple(expected[k].shape)} ({len(bad)} tensors differ)")
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model


def _train_size_from_meta(meta: Mapping[str, str], source: str = "checkpoint"
                          ) -> tuple[int, int] | None:
    raw = meta.get("tlc_train_size")
    if raw is None:
        return None
    try:
        vals = json.loads(raw)
    except (ValueError, TypeError):
        vals = None
    if (not isinstance(vals, list) or len(vals) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in vals)):
        raise CheckpointError(
            f"{source}: bad tlc_train_size metadata {raw!r}: expected [H, W], two positive "
            "integers (the training LR patch size); re-convert the weights with the right "
            "train_size=(H, W)")
    return (vals[0], vals[1])


#: metadata that describes the architecture: must agree with the tensors when present
_SHAPE_METADATA = ("scale", "width", "num_blocks", "in_channels")


def check_metadata(meta: Mapping[str, str], cfg: NAFSSRConfig,
                   source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` when our metadata is malformed (``tlc_train_size`` not
    two positive integers, ``scale``/``width``/``num_blocks``/``in_channels`` not positive
    integers) or disagrees with the architecture ``cfg`` derived from the tensors."""
    _train_size_from_meta(meta, source)
    if meta.get("format") != FORMAT_TAG:
        return  # another tool's metadata: the names may mean something else
    for name in _SHAPE_METADATA:
        raw = meta.get(name)
        if raw is None:
            continue
        want = getattr(cfg, name)
        if not str(raw).isdigit() or int(raw) < 1:
            raise CheckpointError(f"{source}: bad {name} metadata {raw!r}: expected a positive "
                                  f"integer (the tensors say {want})")
        if int(raw) != want:
            raise CheckpointError(f"{source}: metadata says {name} {raw} but the tensors say "
                                  f"{want}; the file is inconsistent: re-convert it from the "
                                  "original weights")


def load_model(source: str | os.PathLike[str] | Mapping[str, Any], device: str |
               torch.device | None = None, *, tlc: bool = True,
               tlc_train_size: tuple[int, int] | None = None, key: str | None = None) -> NAFSSR:
    """Load a NAFSSR checkpoint (file, registered name, or state dict) in eval mode.

    ``tlc`` (default on) converts the model for inference with the official TLC rule; the window
    comes from ``tlc_train_size``, else the checkpoint's metadata, else 30x90.
    """
    if tlc_train_size is not None and (
            len(tlc_train_size) != 2 or not all(isinstance(v, int) and v >= 1
                                                for v in tlc_train_size)):
        raise InputError(f"tlc_train_size must be two positive integers (H, W), got "
                         f"{tlc_train_size!r}")
    meta: dict[str, str] = {}
    if isinstance(source, Mapping):
        raw: Mapping[str, Any] = source
    else:
        path = Path(source)
        if not path.exists():
            from .registry import resolve_name

            resolved = resolve_name(str(source))
            if resolved is None:
                raise CheckpointError(f"{source}: no such file and not a registered model name; "
                                      "see `stereosr models` for the names")
            path = resolved
        raw, meta = read_checkpoint(path)
    name = str(source) if not isinstance(source, Mapping) else "state dict"
    try:
        sd = unwrap_state_dict(raw, key=key)
    except CheckpointError as exc:
        raise CheckpointError(f"{name}: {exc}") from None
    model = model_from_state_dict(sd, source=name)
    check_metadata(meta, model.config, name)
    model.checkpoint_metadata = dict(meta)  # type: ignore[assignment]
    if tlc:
        size = tlc_train_size or _train_size_from_meta(meta, name) or DEFAULT_TRAIN_SIZE
        enable_tlc(model, size)
    return model.to(resolve_device(device)).eval()


def _metadata_for(model: NAFSSR, extra: Mapping[str, Any] | None,
                  train_size: tuple[int, int] | None) -> dict[str, str]:
    cfg = model.config
    size = train_size or tlc_train_size(model) or DEFAULT_TRAIN_SIZE
    meta = {
        "format": FORMAT_TAG,
        "architecture": "NAFSSR",
        "variant": variant_name(cfg.width, cfg.num_blocks) or "custom",
        "scale": str(cfg.scale),
        "width": str(cfg.width),
        "num_blocks": str(cfg.num_blocks),
        "in_channels": str(cfg.in_channels),
        "tlc_train_size": json.dumps(list(size)),
    }
    for k, v in (extra or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    return meta


def save_model(model: NAFSSR | Mapping[str, Tensor], path: str | os.PathLike[str],
               metadata: Mapping[str, Any] | None = None, *, overwrite: bool = False,
               train_size: tuple[int, int] | None = None) -> Path:
    """Write weights to ``.safetensors`` with metadata (atomic; refuses to overwrite by default).

    ``metadata`` values that are not strings are stored as JSON (e.g. provenance dicts).
    """
    from safetensors.torch import save

    if isinstance(model, Mapping):
        sd = unwrap_state_dict(model)
        net = model_from_state_dict(sd)
    else:
        net = model
        sd = {k: v for k, v in model.state_dict().items()}
    p = Path(path)
    if p.suffix != ".safetensors":
        raise InputError(f"{p}: output must end in .safetensors")
    if p.exists() and not overwrite:
        raise InputError(f"{p}: already exists; pass overwrite=True to replace it")
    p.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sd.items()}
    # Serialised in memory and written by the shared atomic writer, so the file gets the
    # umask's permissions (safetensors' save_file makes its files 0600).
    data = save(tensors, metadata=_metadata_for(net, metadata, train_size))
    atomic_write_bytes(p, data, overwrite=overwrite)
    return p


def convert_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                       key: str | None = None, metadata: Mapping[str, Any] | None = None,
                       overwrite: bool = False,
                       train_size: tuple[int, int] | None = None) -> Path:
    """Convert an official ``.pth`` (or any accepted checkpoint) to our safetensors format."""
    raw, meta = read_checkpoint(src)
    try:
        sd = unwrap_state_dict(raw, key=key)
    except CheckpointError as exc:
        raise CheckpointError(f"{src}: {exc}") from None
    model = model_from_state_dict(sd, source=str(src))
    check_metadata(meta, model.config, str(src))
    prov: dict[str, Any] = {"converted_from": Path(src).name}
    derived = ("format", "architecture", "variant", "tlc_train_size", *_SHAPE_METADATA)
    prov.update({k: v for k, v in meta.items() if k not in derived})
    prov.update(dict(metadata or {}))
    return save_model(model, dst, prov, overwrite=overwrite,
                      train_size=train_size or _train_size_from_meta(meta, str(src)))
