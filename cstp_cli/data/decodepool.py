"""Decoder worker processes with a per-video timeout (DESIGN "HDF5 cache", build).

A build hands every source video to :class:`DecoderPool`: worker processes (forkserver or
spawn, never fork) decode one video each with ``decode(path, size, fps)``; a worker that
exceeds the timeout, or dies, costs that one video (it becomes a failure with its reason)
and is replaced. Nothing here knows the HDF5 format: the pool returns
:class:`DecodeOutcome` objects (frames ``uint8[N, H, W, 3]`` or a reason) to the caller; with
an ``encode`` callable (e.g. a JPEG encoder) the worker encodes the frames before sending them.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait as _mp_wait
from typing import Any, Callable, Sequence

import numpy as np

from cstp_cli.errors import CacheError, CstpError, VideoDecodeError

__all__ = ["DecodeJob", "DecodeOutcome", "DecoderPool", "decode_one", "run_inline", "default_decode", "source_fingerprint"]

#: Seconds a decoder process may take to start (import cstp, av) before the build fails.
WORKER_START_TIMEOUT = 60.0


#: Bytes hashed at each end of a source file for its fingerprint.
FINGERPRINT_BYTES = 64 * 1024


def source_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Fingerprint of a source file: size, mtime_ns and the SHA-1 of its first and last
    64 KiB (``FINGERPRINT_BYTES``). A frame folder (a directory of images) gets the total
    size, the newest mtime and the SHA-1 of its listing (name, size, mtime of each file).
    Raises ``OSError`` when the file cannot be read."""
    st = os.stat(path)
    digest = hashlib.sha1()
    if os.path.isdir(path):
        total, newest = 0, int(st.st_mtime_ns)
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            est = entry.stat()
            total, newest = total + est.st_size, max(newest, int(est.st_mtime_ns))
            digest.update(f"{entry.name}\0{est.st_size}\0{est.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        return {"size": total, "mtime_ns": newest, "sha1": digest.hexdigest()}
    with open(path, "rb") as fh:
        digest.update(fh.read(FINGERPRINT_BYTES))
        if st.st_size > FINGERPRINT_BYTES:
            fh.seek(max(FINGERPRINT_BYTES, st.st_size - FINGERPRINT_BYTES))
            digest.update(fh.read(FINGERPRINT_BYTES))
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "sha1": digest.hexdigest()}


@dataclass(frozen=True)
class DecodeJob:
    """One source video to decode: its position in the dataset index and its file."""

    index: int
    path: str
    rel: str


@dataclass
class DecodeOutcome:
    """What a worker returns for one job: frames (uint8 [N,H,W,3]), or their ``encoded``
    form when the pool has an ``encode`` callable, or a failure reason."""

    index: int
    frames: np.ndarray | None = None
    fps: float = 0.0
    warnings: list[str] = field(default_factory=list)
    source_wh: tuple[int, int] = (0, 0)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    encoded: Any = None

    @property
    def nframes(self) -> int:
        return len(self.frames) if self.frames is not None else len(self.encoded) if self.encoded is not None else 0

    @property
    def payload_bytes(self) -> int:
        """Bytes of the frames as they will be written (raw or encoded)."""
        data = self.frames if self.frames is not None else self.encoded
        return int(data.nbytes) if data is not None else 0


def default_decode(path: str, size: tuple[int, int], fps: float | None) -> Any:
    """The decoder of a build: :func:`cstp_cli.data.video.decode` (frames resized on decode)."""
    from cstp_cli.data.video import decode

    return decode(path, size=size, fps=fps)


def decode_one(decode: Callable, job: DecodeJob, size: tuple[int, int], fps: float | None, encode: Callable | None = None) -> DecodeOutcome:
    """Decode one job into an :class:`DecodeOutcome`; every expected problem becomes a reason.
    With ``encode`` the frames are returned as ``encode(frames)`` in ``encoded``."""
    out = DecodeOutcome(job.index)
    path = job.path
    if not os.path.exists(path):
        out.reason = "dangling symbolic link" if os.path.islink(path) else "file not found"
        return out
    try:
        out.fingerprint = source_fingerprint(path)
    except OSError as exc:
        out.reason = f"cannot read the file: {exc.strerror or exc}"
        return out
    if out.fingerprint["size"] == 0 and not os.path.isdir(path):
        out.reason = "empty file (0 bytes)"
        return out
    try:
        decoded = decode(path, size, fps)
    except VideoDecodeError as exc:
        out.reason = exc.reason
        return out
    except CstpError as exc:
        out.reason = str(exc)
        return out
    except MemoryError:
        out.reason = "out of memory while decoding"
        return out
    except Exception as exc:  # a decoder bug must cost one video, not the build
        out.reason = f"decoder error: {type(exc).__name__}: {exc}"
        return out
    frames = np.asarray(getattr(decoded, "frames", None))
    w, h = size
    if frames.ndim != 4 or frames.shape[1:] != (h, w, 3) or frames.dtype != np.uint8:
        out.reason = f"decoder returned frames of shape {frames.shape} {frames.dtype}, expected (N, {h}, {w}, 3) uint8"
        return out
    if frames.shape[0] == 0:
        out.reason = "no decodable frame"
        return out
    out.frames = np.ascontiguousarray(frames)
    if encode is not None:
        try:
            out.encoded, out.frames = encode(out.frames), None
        except Exception as exc:  # an encoder bug must cost one video, not the build
            out.reason = f"encoder error: {type(exc).__name__}: {exc}"
            out.frames = None
            return out
    out.fps = float(getattr(decoded, "fps", 0.0) or 0.0)
    out.warnings = [str(m) for m in (getattr(decoded, "warnings", None) or [])]
    source_wh = getattr(decoded, "source_wh", None) or (0, 0)
    out.source_wh = (int(source_wh[0]), int(source_wh[1]))
    return out


def _worker_main(conn: Any, decode: Callable, size: tuple[int, int], fps: float | None, encode: Callable | None = None) -> None:
    """Loop of one decoder process: receive a :class:`DecodeJob`, send back its :class:`DecodeOutcome`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl+C
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(("done", decode_one(decode, job, size, fps, encode)))


def _mp_context() -> Any:
    """forkserver where available (cheap restarts, no inherited threads), else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["cstp_cli.data.decodepool", "cstp_cli.data.video.decode"])
        return ctx
    return multiprocessing.get_context("spawn")


@dataclass
class _Worker:
    proc: Any
    conn: Any
    ready: bool = False
    job: DecodeJob | None = None
    since: float = 0.0
    started: float = field(default_factory=time.monotonic)


class DecoderPool:
    """Worker processes that decode jobs, each with a per-video timeout.

    A job whose worker exceeds ``timeout`` seconds, or whose worker dies, becomes a
    failure; the worker is killed and replaced, the other jobs go on.
    """

    def __init__(self, workers: int, decode: Callable, size: tuple[int, int], fps: float | None, timeout: float, encode: Callable | None = None):
        self.n = max(1, int(workers))
        self.decode, self.size, self.fps, self.timeout = decode, size, fps, float(timeout)
        self.encode = encode
        self.ctx = _mp_context()
        self.startup_failures = 0

    def _start(self) -> _Worker:
        parent, child = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(
            target=_worker_main, args=(child, self.decode, self.size, self.fps, self.encode), daemon=True, name="cstp-decode"
        )
        proc.start()
        child.close()
        return _Worker(proc, parent)

    @staticmethod
    def _stop(worker: _Worker, kill: bool = False) -> None:
        if kill:
            worker.proc.kill()
        else:
            with contextlib.suppress(OSError, BrokenPipeError):
                worker.conn.send(None)
        worker.proc.join(timeout=2.0)
        if worker.proc.is_alive():
            worker.proc.kill()
            worker.proc.join(timeout=2.0)
        worker.conn.close()

    def run(self, jobs: Sequence[DecodeJob], on_outcome: Callable[[DecodeOutcome], None]) -> None:
        """Decode every job, calling ``on_outcome`` in the parent for each as it finishes."""
        pending = deque(jobs)
        workers = [self._start() for _ in range(min(self.n, len(pending)))]
        try:
            while pending or any(w.job is not None for w in workers):
                for w in workers:
                    if w.ready and w.job is None and pending:
                        w.job, w.since = pending.popleft(), time.monotonic()
                        w.conn.send(w.job)
                deadlines = [w.since + self.timeout for w in workers if w.job is not None]
                deadlines += [w.started + WORKER_START_TIMEOUT for w in workers if not w.ready]
                wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                _mp_wait([w.conn for w in workers] + [w.proc.sentinel for w in workers], timeout=wait_s)
                for k, w in enumerate(workers):
                    workers[k] = self._poll(w, on_outcome)
                if not pending and all(w.job is None for w in workers):
                    break
        finally:
            for w in workers:
                self._stop(w, kill=w.job is not None)

    def _poll(self, w: _Worker, on_outcome: Callable[[DecodeOutcome], None]) -> _Worker:
        """Handle what one worker did; return it, or its replacement."""
        dead = False
        try:
            if w.conn.poll():
                kind, payload = w.conn.recv()
                if kind == "ready":
                    w.ready = True
                    self.startup_failures = 0
                else:
                    w.job = None
                    on_outcome(payload)
                return w
        except (EOFError, OSError):
            dead = True
        if dead or not w.proc.is_alive():
            w.proc.join(timeout=2.0)
            code = w.proc.exitcode
            if w.job is not None:
                how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                on_outcome(DecodeOutcome(w.job.index, reason=f"decoder process crashed ({how})"))
            elif not w.ready:
                self.startup_failures += 1
                if self.startup_failures > 3 * self.n:
                    raise CacheError(
                        f"decoder worker processes fail to start (exit code {code}); "
                        "retry with --workers 0 and CSTP_DEBUG=1 to see why"
                    )
            self._stop(w, kill=True)
            return self._start()
        if not w.ready and time.monotonic() - w.started > WORKER_START_TIMEOUT:
            raise CacheError(
                f"decoder worker processes did not start within {WORKER_START_TIMEOUT:g} s; a script that "
                "builds a cache must guard its main code with `if __name__ == \"__main__\":` (workers import it)"
            )
        if w.job is not None and time.monotonic() - w.since > self.timeout:
            on_outcome(
                DecodeOutcome(w.job.index, reason=f"timed out after {self.timeout:g} s (decoder hung); raise --timeout if the file is just long")
            )
            self._stop(w, kill=True)
            return self._start()
        return w


def run_inline(jobs: Sequence[DecodeJob], decode: Callable, size, fps, on_outcome, encode: Callable | None = None) -> None:
    """``workers=0``: decode in this process (no timeout; for debugging and small tests)."""
    for job in jobs:
        on_outcome(decode_one(decode, job, size, fps, encode))
