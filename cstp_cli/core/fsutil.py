"""Atomic file writes: nothing a user had is replaced by a partial file (DESIGN "Errors").

Every file cstp keeps (checkpoints, reports, feature files) is written under a temporary
name in the destination folder, flushed, given the usual permissions and renamed into place;
on any failure the temporary file is removed and the old file stays.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cstp_cli.errors import UsageError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The caller writes the temporary path (with any library: torch, h5py, onnx, ...); when
    the block raises, the temporary file is removed and ``path`` is untouched. The
    temporary name is ``.<name>.<random><suffix>`` (hidden; ``suffix`` lets a library that
    looks at extensions, such as onnxruntime, read it). Raises ``OSError`` when the
    destination folder cannot be created or written — before any work is done.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (fsync before the rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _probe_write(folder: Path) -> None:
    """Create, write and remove a hidden file in ``folder`` (``os.access`` lies for root)."""
    fd, name = tempfile.mkstemp(prefix=".cstp-write-test.", dir=folder)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)
        os.unlink(name)


def check_output_dir(folder: str | os.PathLike, flag: str = "-o") -> Path:
    """Check up front that ``folder`` is (or can become) a writable folder; return it.

    Creates missing parents, then makes a real write test. Raises :class:`UsageError`
    (exit 2) naming the folder, the reason and ``flag`` when it is a file, cannot be
    created or cannot be written — before any decoding or training starts.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a folder; choose another {flag}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _probe_write(folder)
    except OSError as exc:
        reason = "no space left on the device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise UsageError(f"cannot write to the folder {folder}: {reason}; choose another {flag}") from None
    return folder


def check_output_file(path: str | os.PathLike, flag: str = "-o") -> Path:
    """Check up front that the file ``path`` can be written (its folder exists or can be made).

    Raises :class:`UsageError` (exit 2) when ``path`` is a folder, or its folder is not
    writable (a real write test in that folder). The file itself is not created.
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; {flag} expects a file name, e.g. {path / 'out'}")
    check_output_dir(path.parent, flag)
    return path
