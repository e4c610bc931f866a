"""Writing output files safely: atomically, exclusively, and cleaning up after killed runs.

Every output goes to a temporary file beside its target (``.<name>.stereosr-<random>.tmp``), is
flushed to disk, and is then published under its name in one step:

- without ``overwrite``, with a hard link (``os.link``), which fails when the name exists, so
  a file that appeared meanwhile (another run writing into the same folder) is never
  replaced; where a file system has no hard links, ``renameat2(RENAME_NOREPLACE)`` does the
  same on Linux;
- with ``overwrite``, with ``os.replace``.

Readers therefore see a whole file or none. While a temporary file is being written, its
writer holds an exclusive ``flock`` on it; :func:`remove_stale_temps` deletes only temporary
files nobody holds, i.e. those left behind by a run killed with SIGKILL (a run that is merely
concurrent keeps its files). Failures of the file system (disk full, quota, read-only, no
permission, missing folder) become an :class:`~stereosr.errors.OutputError` of one line.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .errors import InputError, OutputError, OutputExistsError

__all__ = [
    "atomic_write_bytes",
    "check_free",
    "check_writable_dir",
    "commit_files",
    "input_places",
    "landing_place",
    "mirrored_path",
    "probe_folder",
    "remove_stale_temps",
    "removed_if_left_empty",
    "staged_folder",
    "temp_file_beside",
]

try:  # flock is POSIX; without it, temporaries are not locked and never taken for stale
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Marks this module's temporaries, so that cleaning up never takes a user's own hidden
#: ``.tmp`` file or folder for one of them.
_MARK = "stereosr-"
#: ``.<target name>.stereosr-<random>.tmp`` (mkstemp adds 8 characters of [a-z0-9_])
_TEMP_RE = re.compile(r"^\.(?P<target>.+)\.stereosr-[a-z0-9_]{8}\.tmp$")
#: ``.<target name>.stereosr-<random>.partial``: a folder being built (:func:`staged_folder`)
_TEMP_DIR_RE = re.compile(r"^\.(?P<target>.+)\.stereosr-[a-z0-9_]{8}\.partial$")

_DISK_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "the folder does not exist",
    errno.EFBIG: "file too large for the file system",
}


def _os_error(path: Path, exc: OSError) -> OutputError:
    why = _DISK_ERRORS.get(exc.errno or 0, exc.strerror or type(exc).__name__)
    return OutputError(f"{path}: cannot write ({why}); nothing was left half-written: free "
                       "space or choose another output folder")


def probe_folder(folder: str | os.PathLike[str]) -> None:
    """Prove that ``folder`` takes new files by creating and removing one (``os.access`` is not
    trusted: it says yes to root on read-only mounts and ignores ACLs).

    Raises:
        OutputError: naming the folder and the reason.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=".stereosr-probe-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"{folder}: output folder is not writable ({exc.strerror}); choose "
                          "another folder") from None


def check_writable_dir(path: str | os.PathLike[str], create: bool = True) -> Path:
    """Make sure ``path`` is (or, with ``create``, is made) a folder that takes new files.

    Raises:
        OutputError: ``path`` is a file, is missing (without ``create``), cannot be created or
            is not writable.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{p}: exists and is not a folder; choose another output folder")
    if not p.exists():
        if not create:
            raise OutputError(f"{p}: folder does not exist")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{p}: cannot create output folder ({exc.strerror})") from None
    probe_folder(p)
    return p


@contextlib.contextmanager
def removed_if_left_empty(path: str | os.PathLike[str]) -> Iterator[None]:
    """Run the block; when it fails and ``path`` did not exist before it, remove the folders
    the block left empty there (bottom up; files are never touched), so that a failed command
    leaves no empty output folder behind."""
    root = Path(path)
    existed = os.path.lexists(root)
    try:
        yield
    except BaseException:
        if not existed and root.is_dir() and not root.is_symlink():
            for folder, _, _ in sorted(os.walk(root), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)  # only succeeds on an empty folder
        raise


def mirrored_path(path: str | os.PathLike[str], root: str | os.PathLike[str],
                  out_root: str | os.PathLike[str], suffix: str | None = None) -> Path:
    """``path``'s place under ``out_root``: the same relative folders and file name as under
    ``root`` (with ``suffix`` replacing the extension when given).

    Raises:
        InputError: ``path`` does not lie inside ``root``.
    """
    try:
        rel = Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root)))
    except ValueError:  # another drive on Windows
        rel = Path("..")
    if ".." in rel.parts:
        raise InputError(f"{path}: lies outside {root}; cannot mirror it into {out_root}")
    out = Path(out_root) / rel
    return out.with_suffix(suffix) if suffix is not None else out


def landing_place(path: str | os.PathLike[str]) -> str:
    """Where a file published at ``path`` lands: its folder with every symbolic link resolved,
    and its name (a link at ``path`` itself is replaced by the atomic rename, not followed)."""
    p = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p))


def input_places(paths: Iterable[str | os.PathLike[str]]) -> set[str]:
    """The places input files occupy, for refusing outputs that would replace one: each path
    where it lands (:func:`landing_place`) and, for a symbolic link, the file it points to.
    Compare :func:`landing_place` of an output against this set; an output reached through a
    linked folder (``-o`` a link to the input folder) is caught as well."""
    return {q for p in paths for q in (landing_place(p), os.path.realpath(p))}


_HELD_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM") if hasattr(signal, n))


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back until the block ends, then deliver them.

    For the few statements that create a temporary file and record it for removal: an
    interrupt between the two would leave the file behind. The handlers in place are swapped
    for ones that only note the signal; at the end they are put back and each noted signal is
    raised again (``signal.raise_signal``), so the usual handler runs then, once the file is
    recorded. Outside the main thread (where handlers cannot be set) the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    # A handler not set from Python (getsignal gives None) could not be put back: leave it.
    previous = {s: signal.signal(s, lambda signum, frame: noted.append(signum))
                for s in _HELD_SIGNALS if signal.getsignal(s) is not None}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(noted):
            signal.raise_signal(s)


def temp_file_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """Open a new temporary file in ``path``'s folder for publishing ``path`` later.

    Returns ``(fd, temporary path)``. The file gets the permissions a plain ``open`` would give
    it under the current umask (not ``mkstemp``'s 0600), and is ``flock``-ed for as long as
    ``fd`` stays open, which marks it as in use for :func:`remove_stale_temps`.
    """
    mask = os.umask(0)
    os.umask(mask)
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_MARK}", suffix=suffix,
                                   dir=path.parent)
        os.fchmod(fd, 0o666 & ~mask)
        if fcntl is None:
            return fd, tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # A cleaner may have taken the file for stale between mkstemp and flock: make sure
            # the name is still this file, else start over with a new one.
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return fd, tmp
        except OSError:
            pass
        os.close(fd)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _rename_noreplace(src: str, dst: Path) -> None:
    """Linux ``renameat2(..., RENAME_NOREPLACE)``; raises OSError (EEXIST when ``dst`` exists)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(str(dst)), _RENAME_NOREPLACE):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(dst))


def _publish(tmp: str, path: Path, overwrite: bool) -> None:
    """Give ``tmp`` the name ``path``; without ``overwrite``, never replace an existing file."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK,
                             errno.ENOSYS):
            raise
        _rename_noreplace(tmp, path)  # no hard links here (FAT, some FUSE/SMB mounts)
        return
    os.unlink(tmp)


def check_free(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse when any of ``paths`` exists (unless ``overwrite``), before anything is written.

    Raises:
        OutputExistsError: naming the first existing file and how many more exist.
    """
    if overwrite:
        return
    existing = [p for p in paths if os.path.lexists(p)]
    if existing:
        what = (f"{existing[0]} and {len(existing) - 1} more already exist" if len(existing) > 1
                else f"{existing[0]}: already exists")
        raise OutputExistsError(f"{what}; pass overwrite=True to replace, or choose another "
                                "output folder")


_APPEARED = ("appeared while this run was working (another run writing into the same "
             "folder?); kept it")


def commit_files(items: Sequence[tuple[Path, bytes]], overwrite: bool = False, *,
                 checked: bool = False) -> None:
    """Write several files so that all of them appear or none does.

    Each file is written and flushed to a temporary file first; then all are published (see the
    module docstring). Without ``overwrite``, a target that exists, even one that appeared
    while the data were written, is kept and nothing of the group stays published.
    ``checked``: the caller made sure earlier that no target existed (:func:`check_free`), so
    one that exists now appeared meanwhile, and the error says so.

    Raises:
        OutputExistsError: a target exists and ``overwrite`` is false.
        OutputError: the file system refused (disk full, read-only, ...); no partial file stays.
    """
    if checked and not overwrite:
        there = [p for p, _ in items if os.path.lexists(p)]
        if there:
            raise OutputExistsError(f"{there[0]}: {_APPEARED}; pass overwrite=True to replace")
    check_free([p for p, _ in items], overwrite)
    temps: list[tuple[int, str, Path]] = []
    published: list[Path] = []
    current = items[0][0] if items else Path(".")
    try:
        for path, data in items:
            current = path
            path.parent.mkdir(parents=True, exist_ok=True)
            with interrupts_held():  # the file is made and recorded, or neither
                fd, tmp = temp_file_beside(path)
                temps.append((fd, tmp, path))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        for _, tmp, path in temps:
            current = path
            _publish(tmp, path, overwrite)
            published.append(path)
    except BaseException as exc:
        if not overwrite:  # all or none: withdraw this group's new files (ours, just made)
            for p in published:
                with contextlib.suppress(OSError):
                    os.unlink(p)
        if isinstance(exc, FileExistsError):
            raise OutputExistsError(f"{current}: {_APPEARED} and withdrew the files written "
                                    "with it; pass overwrite=True to replace") from None
        if isinstance(exc, OSError):
            raise _os_error(current, exc) from None
        raise
    finally:
        for fd, tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`commit_files`)."""
    commit_files([(Path(path), data)], overwrite)


@contextlib.contextmanager
def staged_folder(final: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """A new hidden folder beside ``final`` to fill; when the block ends without an exception it
    is published as ``final`` in one rename, so ``final`` appears complete or not at all.

    Without ``overwrite`` the rename never replaces a ``final`` that exists or appeared
    meanwhile (``renameat2(RENAME_NOREPLACE)`` on Linux; elsewhere a plain rename, which fails
    on a non-empty folder). With ``overwrite`` an existing ``final`` is replaced. The folder is
    ``flock``-ed while in use, so :func:`remove_stale_temps` only removes those of killed runs.

    Raises:
        OutputExistsError: ``final`` exists and ``overwrite`` is false.
        OutputError: the file system refused.
    """
    dst = Path(final)
    check_free([dst], overwrite)
    tmp: Path | None = None
    fd = -1
    try:
        with interrupts_held():  # the folder is made and recorded, or neither
            try:
                tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.{_MARK}", suffix=".partial",
                                            dir=dst.parent))
                fd = os.open(tmp, os.O_RDONLY)
            except OSError as exc:
                raise _os_error(dst, exc) from None
        assert tmp is not None
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield tmp
        except OutputError as exc:  # name the folder the user asked for, not the hidden one
            raise type(exc)(str(exc).replace(str(tmp), str(dst))) from None
        try:
            if not overwrite:
                try:
                    _rename_noreplace(str(tmp), dst)
                except OSError as exc:
                    if exc.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
                        raise
                    os.rename(tmp, dst)  # no renameat2: refuses a non-empty folder at least
            elif dst.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.{_MARK}", suffix=".partial",
                                            dir=dst.parent))
                os.replace(dst, old / dst.name)
                os.replace(tmp, dst)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, dst)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise OutputExistsError(f"{dst}: appeared while this run was writing it (another "
                                        "run writing into the same folder?); kept it; pass "
                                        "overwrite=True to replace") from None
            raise _os_error(dst, exc) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if fd >= 0:
            os.close(fd)


def remove_stale_temps(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Delete the temporary files and partial folders that killed runs left in ``folder`` (and
    its sub-folders with ``recursive``); returns the paths removed.

    Only entries named like this module's temporaries (``.NAME.stereosr-XXXXXXXX.tmp`` files,
    ``.NAME.stereosr-XXXXXXXX.partial`` folders) and not locked by a live writer are removed;
    those of a run still writing are left alone, and so are other hidden files (a user's own
    ``.notes.tmp``).
    """
    root = Path(folder)
    removed: list[Path] = []
    if fcntl is None or not root.is_dir():
        return removed
    walker = os.walk(root) if recursive else [(str(root), None, None)]
    for here, dirs, names in walker:
        if names is None or dirs is None:
            try:
                entries = list(os.scandir(here))
            except OSError:
                continue
            names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
            dirs = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        candidates = [(n, False) for n in names if _TEMP_RE.match(n)]
        candidates += [(n, True) for n in dirs if _TEMP_DIR_RE.match(n)]
        for name, is_dir in candidates:
            path = Path(here) / name
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # a live writer holds it
                continue
            try:
                if is_dir:
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                removed.append(path)
            except OSError:
                pass
            finally:
                os.close(fd)
    return removed
