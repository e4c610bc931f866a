"""Cached, checksummed downloads of weight files.

``download(url)`` returns the path of a local copy of ``url`` in the cache folder, fetching it
on first use. The cache folder is ``$STEREOSR_CACHE`` when set, else ``~/.cache/stereosr``.
Downloads are streamed into a temporary file beside the final one and renamed into place only
after the SHA-256 checksum matched, so an interrupted or corrupt download never appears in the
cache. Setting ``STEREOSR_OFFLINE=1`` forbids network access: only cached files are returned.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import InputError
from .files import interrupts_held

__all__ = [
    "CACHE_ENV",
    "OFFLINE_ENV",
    "DownloadError",
    "cached_path",
    "check_sha256",
    "download",
    "download_or_explain",
    "hash_prefix_from_name",
    "hash_prefix_from_url",
    "resolve_cache_dir",
    "sha256_file",
]

CACHE_ENV = "STEREOSR_CACHE"
OFFLINE_ENV = "STEREOSR_OFFLINE"
_CHUNK = 1 << 20
_PROGRESS_MIN_BYTES = 8 << 20  # show a progress bar for files of at least 8 MiB
_HEX = re.compile(r"^[0-9a-f]+$")
# torchvision-style file names carry the first hex digits of the SHA-256: "vgg16-397923af.pth".
_NAME_HASH = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9.]+$")


class DownloadError(InputError):
    """A download failed (network, HTTP status, checksum) or is forbidden offline."""


def resolve_cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``override``, else ``$STEREOSR_CACHE``, else ``~/.cache/stereosr``."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "stereosr"


def _file_name(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name or name in (".", ".."):
        raise InputError(f"cannot derive a file name from URL {url!r}; it must end in a file name")
    return name


def hash_prefix_from_url(url: str) -> str | None:
    """The SHA-256 prefix embedded in a torchvision-style file name, e.g. '397923af', or None."""
    return hash_prefix_from_name(_file_name(url))


def hash_prefix_from_name(name: str) -> str | None:
    """The SHA-256 prefix in a torchvision-style file name (``vgg16-397923af.pth``), or None."""
    m = _NAME_HASH.search(Path(name).name)
    return m.group(1) if m else None


def cached_path(url: str, cache_dir: str | os.PathLike[str] | None = None,
                file_name: str | None = None) -> Path:
    """Where :func:`download` keeps ``url``: ``<cache folder>/<file_name or the URL's name>``."""
    return resolve_cache_dir(cache_dir) / (file_name or _file_name(url))


# Digests of files already hashed in this process, keyed by (path, size, mtime): large weight
# files are checked on every load without being read again while they are unchanged.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Full lowercase hex SHA-256 of a file."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key in _DIGESTS:
        return _DIGESTS[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def check_sha256(path: str | os.PathLike[str], sha256: str, what: str = "weights file") -> None:
    """Raise :class:`DownloadError` (one line) unless the SHA-256 of ``path`` starts with
    ``sha256`` (a full hex digest or a prefix of at least one digit)."""
    expected = _normalise_hash(sha256)
    assert expected is not None
    digest = sha256_file(path)
    if not digest.startswith(expected):
        raise DownloadError(
            f"{what} {path} has SHA-256 {digest[:16]}..., expected {expected[:16]}...; it is not "
            f"the right file (corrupt, truncated or another model): replace or delete it")


def _normalise_hash(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    s = sha256.strip().lower()
    if not s or len(s) > 64 or not _HEX.match(s):
        raise InputError(f"sha256 must be 1 to 64 hex digits, got {sha256!r}")
    return s


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def download(url: str, sha256: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
             *, progress: bool = True, timeout: float = 60.0, verify_cached: bool = True,
             file_name: str | None = None) -> Path:
    """Local path of ``url``, downloading it into the cache folder when not already there.

    ``sha256``: the full hex digest or a prefix of it (torchvision names files with the first
    8+ digits); the downloaded bytes must match or the file is discarded and
    :class:`DownloadError` raised. A cached file is checked against ``sha256`` too (a mismatch
    raises :class:`DownloadError`; ``verify_cached=False`` trusts it). ``file_name``: the name
    in the cache (default: the URL's). ``cache_dir`` overrides ``$STEREOSR_CACHE``. A tqdm
    progress bar is shown on stderr for files of 8 MiB or more when ``progress``. ``timeout``:
    seconds per network wait.
    """
    expected = _normalise_hash(sha256)
    folder = resolve_cache_dir(cache_dir)
    target = folder / (file_name or _file_name(url))
    if target.is_file():
        if verify_cached and expected is not None:
            digest = sha256_file(target)
            if not digest.startswith(expected):
                raise DownloadError(
                    f"cached file {target} has SHA-256 {digest[:16]}..., expected "
                    f"{expected[:16]}...; delete it to download it again (or put the right "
                    f"file there)")
        return target
    if _offline():
        raise DownloadError(
            f"{url} is not cached at {target} and {OFFLINE_ENV} forbids downloading; put the "
            f"file there (or set {CACHE_ENV} to the folder holding it)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create cache folder {folder} ({exc.strerror or exc}); set {CACHE_ENV} to a "
            f"writable folder") from exc
    _fetch(url, target, expected, progress=progress, timeout=timeout)
    return target


def _fetch(url: str, target: Path, expected: str | None, *, progress: bool,
           timeout: float) -> None:
    """Stream ``url`` into a temporary file beside ``target``, verify, then rename into place."""
    hint = (f"check the network, or fetch {url} yourself and put it at {target} "
            f"(the cache folder is set by {CACHE_ENV})")
    tmp: Path | None = None
    try:
        with interrupts_held():  # the file is made and recorded for removal, or neither
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                            dir=target.parent)
            tmp = Path(tmp_name)
        request = urllib.request.Request(url, headers={"User-Agent": "stereosr"})
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(request, timeout=timeout)
            except urllib.error.HTTPError as exc:
                raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}; "
                                    f"{hint}") from exc
            except (TimeoutError, urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise DownloadError(f"download of {url} failed: {reason}; {hint}") from exc
            with response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                bar = None
                if progress and (total is None or total >= _PROGRESS_MIN_BYTES):
                    from tqdm.auto import tqdm

                    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                               desc=target.name, leave=False)
                received = 0
                try:
                    while True:
                        try:
                            block = response.read(_CHUNK)
                        except (TimeoutError, OSError) as exc:
                            raise DownloadError(
                                f"download of {url} broke off after {received} bytes: {exc}; "
                                f"{hint}") from exc
                        if not block:
                            break
                        out.write(block)
                        h.update(block)
                        received += len(block)
                        if bar is not None:
                            bar.update(len(block))
                finally:
                    if bar is not None:
                        bar.close()
            if total is not None and received != total:
                raise DownloadError(
                    f"download of {url} is truncated: got {received} of {total} bytes; {hint}")
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if expected is not None and not digest.startswith(expected):
            raise DownloadError(
                f"checksum mismatch for {url}: SHA-256 {digest[:16]}..., expected "
                f"{expected[:16]}...; the file was discarded (a corrupt or changed download)")
        os.replace(tmp, target)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def download_or_explain(url: str, sha256: str, what: str, alternatives: str, *,
                        cache_dir: str | os.PathLike[str] | None = None, progress: bool = True,
                        file_name: str | None = None) -> Path:
    """:func:`download` of an official weights file whose absence is explained in one line.

    When the file is neither cached nor downloadable (offline, network error), the
    :class:`InputError` says where to put it and what else to do: ``"{what}: put <name> (from
    <url>) at <cache path> ($STEREOSR_CACHE chooses the folder), or {alternatives} (<why>)"``.
    A cached file with the wrong checksum keeps :func:`download`'s own message.
    """
    target = cached_path(url, cache_dir, file_name)
    try:
        return download(url, sha256=sha256, cache_dir=cache_dir, progress=progress,
                        file_name=file_name)
    except DownloadError as exc:
        if target.is_file():  # present but wrong: the checksum message says it all
            raise
        # the reason only: download's own message would name the URL and the path again
        why = (f"{OFFLINE_ENV} forbids downloading" if _offline()
               else str(exc).split("; ", 1)[0].replace(f"download of {url} ", "download "))
        raise InputError(f"{what}: put {target.name} (from {url}) at {target} ({CACHE_ENV} "
                         f"chooses the folder), or {alternatives} ({why})") from exc
