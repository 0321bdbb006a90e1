"""Writes that fail cleanly on a full disk (DESIGN "Errors": nothing a user had is lost).

Two libraries cstp writes through do not survive a failed write:

* HDF5 2.0 (h5py 3.16) **segfaults** when a write has failed with ``ENOSPC`` and the file is
  then flushed or closed (measured on a 512 kB tmpfs: ``OSError`` errno 28, then exit 139
  in ``File.close``/``File.flush``, or ``RuntimeError: Can't decrement id ref count``).
* ``torch.save`` reports ``ENOSPC`` as ``RuntimeError("[enforce fail at inline_container.cc]
  ... unexpected pos ...")``, which names no cause.

So both are handed a :class:`GuardedFile` instead of a path: a binary file object whose
``write`` never fails towards the library. The first ``OSError`` is recorded; that write
and later ones are kept in memory instead (up to :data:`OVERLAY_LIMIT` bytes, so HDF5
reading its own metadata back sees what it wrote and stays consistent), and
:func:`guarded_open` raises the recorded ``OSError`` once the library is done with the
file. Callers map that ``OSError`` to their one-line error (:func:`write_failure`) and
remove the temporary file (``cstp_cli.core.fsutil.atomic_path`` does).
"""

from __future__ import annotations

import errno
import io
import os
from contextlib import contextmanager
from typing import Iterator


#: Bytes of failed writes kept in memory for read-back; later ones are dropped. Writers
#: check :meth:`GuardedFile.check` after each block, so only a block and the final
#: metadata land here.
OVERLAY_LIMIT = 512 << 20


class GuardedFile(io.RawIOBase):
    """A read/write binary file whose ``write``/``flush``/``truncate`` record the first
    ``OSError`` in :attr:`error` instead of raising it (see the module docstring).

    Offers what h5py's ``fileobj`` driver and ``torch.save`` use: ``read``/``readinto``,
    ``write``, ``seek``, ``tell``, ``truncate``, ``flush``.
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self._fh = self._open(path)
        self.error: OSError | None = None
        self._overlay: list[tuple[int, bytes]] = []  # (offset, data) of writes after the error
        self._overlay_bytes = 0

    @staticmethod
    def _open(path: str | os.PathLike):
        """The underlying file (tests replace it by one that fails like a full disk)."""
        return open(path, "w+b")  # noqa: SIM115 - closed by close()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def readinto(self, buffer) -> int:
        pos = self._fh.tell()
        view = memoryview(buffer).cast("B")
        n = self._fh.readinto(view)
        if not self._overlay:
            return n
        n = n or 0
        end = pos + len(view)
        for off, data in self._overlay:  # later writes win: applied in order
            a, b = max(pos, off), min(end, off + len(data))
            if a < b:
                if a - pos > n:
                    view[n : a - pos] = bytes(a - pos - n)
                view[a - pos : b - pos] = data[a - off : b - off]
                n = max(n, b - pos)
        self._fh.seek(pos + n)
        return n

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        if self.error is None:
            try:
                self._fh.write(data)
                return n
            except OSError as exc:
                self.error = exc
        if self._overlay_bytes + n <= OVERLAY_LIMIT:  # keep it for read-back
            self._overlay.append((self._fh.tell(), bytes(data)))
            self._overlay_bytes += n
        self._fh.seek(n, os.SEEK_CUR)  # keep the position the library expects
        return n

    def truncate(self, size: int | None = None) -> int:
        try:
            return self._fh.truncate(size)
        except OSError as exc:
            self.error = self.error or exc
            return self.tell() if size is None else size

    def flush(self) -> None:
        if self._fh.closed:
            return
        try:
            self._fh.flush()
        except OSError as exc:
            self.error = self.error or exc

    def check(self) -> None:
        """Raise the recorded write error now (to stop a long write early)."""
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        """Flush and fsync; raise the first write error, if any."""
        self.flush()
        if self.error is None:
            try:
                os.fsync(self._fh.fileno())
            except OSError as exc:
                self.error = exc
        self.check()

    def close(self) -> None:
        if not self._fh.closed:
            try:
                self._fh.close()
            except OSError as exc:
                self.error = self.error or exc
        super().close()


@contextmanager
def guarded_open(path: str | os.PathLike) -> Iterator[GuardedFile]:
    """Open ``path`` for writing as a :class:`GuardedFile`; on leaving the block flush,
    fsync and close it, then raise the first write error as ``OSError``.

    When the block itself raises after a write error (a library tripping over a skipped
    write), the recorded ``OSError`` is raised instead, chained to the library's error.
    """
    fh = GuardedFile(path)
    try:
        yield fh
        fh.finish()
    except Exception as exc:
        if fh.error is not None and exc is not fh.error:
            raise fh.error from exc
        raise
    finally:
        fh.close()


def write_failure(exc: BaseException) -> str:
    """A short reason for a failed write: ``"no space left on the device"`` for ENOSPC
    (also when a library wrapped it in a RuntimeError message), else the OS reason or the
    first line of the message."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if isinstance(exc, OSError) and exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    text = str(exc)
    if "No space left on device" in text or "errno = 28" in text:
        return "no space left on the device"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    if "unexpected pos" in text or "failed writing" in text or "file write failed" in text:
        return "the write failed (full disk or I/O error)"
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:160]
