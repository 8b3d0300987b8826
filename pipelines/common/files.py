"""Atomic file and folder writes and output-folder checks: a killed process never leaves a truncated output.

Every output of the harness is written to a temporary file in its target folder and renamed over
the target (``os.replace``) only once complete. A stage whose outputs form a set (the dataset, a training
run's ``model.pt`` + ``train.json`` + ``curve.csv``, an evaluation's files) builds the whole folder beside the
target and swaps it in with one rename (:func:`atomic_dir`), so a kill at any moment leaves the complete old
set or the complete new one, never a mix.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipelines.common.env import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    A write that fails (a full disk, a read-only or missing folder, ``path`` being a folder) removes the
    temporary file, leaves ``path`` as it was and raises a :class:`UserError` naming ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give a file name")
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(tmp_path, path)
    except OSError as exc:
        why = exc.strerror or exc.__class__.__name__
        if exc.filename is not None and str(exc.filename) not in (str(tmp_path), str(path), str(path.parent)):
            raise UserError(f"{exc.filename}: {why} (while writing {path})") from None  # e.g. a file being copied
        raise UserError(f"{path}: cannot write ({why})") from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def check_writable_dir(folder: str | os.PathLike) -> Path:
    """Fail (one line, naming it) if ``folder`` could not be created or written, without creating anything."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{folder}: cannot create the folder ({probe} is not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{folder}: folder is not writable" if probe == folder else
                        f"{folder}: cannot create the folder ({probe} is not writable)")
    return folder


def ensure_writable_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and fail (one line, naming it) before any work if it cannot be written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{folder}: cannot create the folder ({exc.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"{folder}: folder is not writable")
    return folder


# renameat2(2) flags and the "current directory" descriptor (linux/fcntl.h, linux/fs.h).
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step with Linux's ``renameat2(RENAME_EXCHANGE)``; False where unsupported
    (another OS, a libc without it, a file system that refuses the flag)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the folder ``new`` at ``target`` in one step and delete what was there.

    An existing ``target`` is swapped with ``new`` atomically (``renameat2(RENAME_EXCHANGE)``); without that
    call, ``target`` is first renamed aside to ``.<name>.old-<pid>`` (a kill between the two renames leaves
    no ``target`` but the complete old folder aside, which :func:`atomic_dir` puts back on the next run).
    """
    new, target = Path(new), Path(target)
    if not os.path.lexists(target):
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new)  # now the old folder
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_leftovers(target: Path) -> None:
    """Remove the build folders of killed runs beside ``target``; put back an old folder set aside by a run
    killed between :func:`replace_dir`'s two renames."""
    for kind in ("old", "build"):
        for p in sorted(target.parent.glob(f".{target.name}.{kind}-*")):
            pid = p.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or (int(pid) != os.getpid() and _pid_alive(int(pid))):
                continue  # another run's, still going
            if kind == "old" and not os.path.lexists(target):
                os.rename(p, target)
            else:
                shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside ``target`` to build into; swap it in for ``target`` on success.

    On an error the build folder is removed and ``target`` is untouched; after a kill it stays behind as
    ``.<name>.build-<pid>`` and the next :func:`atomic_dir` on the same target removes it. A symlinked
    ``target`` is replaced where it points. Errors are one-line :class:`UserError` naming ``target``.
    """
    target = Path(target)
    if target.is_symlink():
        target = target.resolve()
    if target.exists() and not target.is_dir():
        raise UserError(f"{target}: exists and is not a folder")
    check_writable_dir(target.parent)
    build = target.with_name(f".{target.name}.build-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _clean_leftovers(target)
        build.mkdir()
        yield build
        replace_dir(build, target)
    except OSError as exc:
        raise UserError(f"{exc.filename or target}: cannot write ({exc.strerror or exc.__class__.__name__})") from None
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
