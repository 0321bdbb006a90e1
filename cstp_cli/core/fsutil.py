"""Atomic file writes: nothing a user had is replaced by a partial file (DESIGN "Errors").

Every file cstp keeps (checkpoints, reports, feature files) is written under a temporary
name in the destination folder, flushed, given the usual permissions and renamed into place;
on any failure the temporary file is removed and the old file stays.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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
