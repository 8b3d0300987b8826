"""Atomic file writes and output-folder checks: a killed process never leaves a truncated output.

Every output of the harness is written to a temporary file in its target folder and renamed over
the target (``os.replace``) only once complete.
"""

from __future__ import annotations

import contextlib
import os
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
