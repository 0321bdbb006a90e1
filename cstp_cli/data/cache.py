"""The HDF5 frame cache: writer, reader, info and verify (DESIGN "HDF5 cache").

The only module of cstp that imports :mod:`h5py`. The format is documented in
``cache/README.md``; in short, one flat ``frames`` dataset ``(N, H, W, 3) uint8`` chunked by
a few frames, per-video tables under ``videos/`` (``offsets`` of length V+1, ``path``,
``label``, ``fps``, ``group``, source fingerprints), per-fold split membership under
``splits/``, ``classes``, ``failures/`` (path + reason) and root attributes (format version,
build parameters, library versions).

Build (:func:`build_cache`): videos are decoded in worker processes (forkserver or spawn,
never fork) with a per-video timeout, so a hanging or crashing decoder costs one video.
Finished batches are written as shard files under a temporary name and renamed, so a
killed build resumes from its finished shards; the final file is assembled from the shards
in dataset order and appears by atomic rename only when complete.

Read (:class:`CacheReader`): picklable, opens the file lazily in each process (DataLoader
workers under fork or spawn); frames are read as contiguous runs or single frames, never
with h5py fancy or step selection (≈200× slower).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from importlib import metadata
from multiprocessing.connection import wait as _mp_wait
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import h5py
import numpy as np

from cstp_cli.core.options import format_size
from cstp_cli.core.progress import Progress
from cstp_cli.errors import CacheError, CstpError, DataError, VideoDecodeError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "DEFAULT_SIZE",
    "BuildResult",
    "CacheReader",
    "build_cache",
    "cache_info",
    "verify_cache",
    "source_fingerprint",
    "is_cache_file",
]

#: Value of the root attribute ``format``; a file without it is not a cstp cache.
FORMAT = "cstp-cache"
#: Bumped on any incompatible change of the layout; other versions are refused.
FORMAT_VERSION = 1
#: Default frame size W×H (METHOD §0, the retrieval protocol's resize).
DEFAULT_SIZE: tuple[int, int] = (171, 128)
#: Frames per HDF5 chunk of ``frames``.
CHUNK_FRAMES = 4
#: Bytes hashed at each end of a source file for its fingerprint.
FINGERPRINT_BYTES = 64 * 1024
#: Reading merges sorted frame indices whose gap is at most this many unread frames into
#: one contiguous read. Measured at 171×128 from the page cache (h5py 3.16): one slice
#: call costs ≈ 12 µs of overhead, one extra frame in a run ≈ 5 µs, so gaps of ≤ 2 frames
#: are cheaper to read through (pace 1–2 → runs, pace ≥ 4 → single frames).
MERGE_GAP = 2
#: Seconds a decoder process may take to start (import cstp, av) before the build fails.
WORKER_START_TIMEOUT = 60.0
#: Shard flush thresholds of a build (whichever is reached first).
SHARD_VIDEOS = 32
SHARD_BYTES = 256 << 20

_STR = h5py.string_dtype("utf-8")
_SPLIT_CODES = {"unused": 0, "train": 1, "test": 2}


# ----------------------------------------------------------------------------- helpers






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


def is_cache_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a regular file with the HDF5 signature."""
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a cache's content (stored as a root attribute)."""
    from cstp_cli import __version__

    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cstp": __version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "numpy": np.__version__,
        "av": dist("av"),
        "python": sys.version.split()[0],
    }


def _strings(values: Iterable[Any]) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=object)


def _read_strings(ds: Any) -> list[str]:
    return list(ds.asstr()[()]) if ds.shape and ds.shape[0] else []


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


# ----------------------------------------------------------------------------- decoding jobs


@dataclass(frozen=True)
class _Job:
    """One source video to decode: its position in the dataset index and its file."""

    index: int
    path: str
    rel: str


@dataclass
class _Outcome:
    """What a worker returns for one job: frames (uint8 [N,H,W,3]) or a failure reason."""

    index: int
    frames: np.ndarray | None = None
    fps: float = 0.0
    warnings: list[str] = field(default_factory=list)
    source_wh: tuple[int, int] = (0, 0)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


def default_decode(path: str, size: tuple[int, int], fps: float | None) -> Any:
    """The decoder of a build: :func:`cstp_cli.data.video.decode` (frames resized on decode)."""
    from cstp_cli.data.video import decode

    return decode(path, size=size, fps=fps)


def _decode_one(decode: Callable, job: _Job, size: tuple[int, int], fps: float | None) -> _Outcome:
    """Decode one job into an :class:`_Outcome`; every expected problem becomes a reason."""
    out = _Outcome(job.index)
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
    out.fps = float(getattr(decoded, "fps", 0.0) or 0.0)
    out.warnings = [str(m) for m in (getattr(decoded, "warnings", None) or [])]
    source_wh = getattr(decoded, "source_wh", None) or (0, 0)
    out.source_wh = (int(source_wh[0]), int(source_wh[1]))
    return out


def _worker_main(conn: Any, decode: Callable, size: tuple[int, int], fps: float | None) -> None:
    """Loop of one decoder process: receive a :class:`_Job`, send back its :class:`_Outcome`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl+C
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(("done", _decode_one(decode, job, size, fps)))


def _mp_context() -> Any:
    """forkserver where available (cheap restarts, no inherited threads), else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["cstp_cli.data.cache", "cstp_cli.data.video"])
        return ctx
    return multiprocessing.get_context("spawn")


@dataclass
class _Worker:
    proc: Any
    conn: Any
    ready: bool = False
    job: _Job | None = None
    since: float = 0.0
    started: float = field(default_factory=time.monotonic)


class _DecoderPool:
    """Worker processes that decode jobs, each with a per-video timeout.

    A job whose worker exceeds ``timeout`` seconds, or whose worker dies, becomes a
    failure; the worker is killed and replaced, the other jobs go on.
    """

    def __init__(self, workers: int, decode: Callable, size: tuple[int, int], fps: float | None, timeout: float):
        self.n = max(1, int(workers))
        self.decode, self.size, self.fps, self.timeout = decode, size, fps, float(timeout)
        self.ctx = _mp_context()
        self.startup_failures = 0

    def _start(self) -> _Worker:
        parent, child = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(
            target=_worker_main, args=(child, self.decode, self.size, self.fps), daemon=True, name="cstp-decode"
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

    def run(self, jobs: Sequence[_Job], on_outcome: Callable[[_Outcome], None]) -> None:
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

    def _poll(self, w: _Worker, on_outcome: Callable[[_Outcome], None]) -> _Worker:
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
                on_outcome(_Outcome(w.job.index, reason=f"decoder process crashed ({how})"))
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
                _Outcome(w.job.index, reason=f"timed out after {self.timeout:g} s (decoder hung); raise --timeout if the file is just long")
            )
            self._stop(w, kill=True)
            return self._start()
        return w


def _run_inline(jobs: Sequence[_Job], decode: Callable, size, fps, on_outcome) -> None:
    """``workers=0``: decode in this process (no timeout; for debugging and small tests)."""
    for job in jobs:
        on_outcome(_decode_one(decode, job, size, fps))


# ----------------------------------------------------------------------------- shards


def shard_dir_for(out: Path) -> Path:
    """Folder holding the finished shards of an unfinished build of ``out``."""
    return out.with_name(out.name + ".shards")


def _write_shard(folder: Path, seq: int, outcomes: list[_Outcome]) -> Path:
    """Write a batch of outcomes as ``shard-<seq>.h5`` (temporary name, then rename)."""
    final = folder / f"shard-{seq:05d}.h5"
    tmp = folder / f"shard-{seq:05d}.h5.tmp"
    ok = sorted((o for o in outcomes if o.reason is None), key=lambda o: o.index)
    bad = sorted((o for o in outcomes if o.reason is not None), key=lambda o: o.index)
    with h5py.File(tmp, "w") as f:
        if ok:
            f.create_dataset("frames", data=np.concatenate([o.frames for o in ok]))
        f["index"] = np.array([o.index for o in ok], dtype=np.int64)
        f["nframes"] = np.array([len(o.frames) for o in ok], dtype=np.int64)
        f["fps"] = np.array([o.fps for o in ok], dtype=np.float64)
        f["source_wh"] = np.array([o.source_wh for o in ok], dtype=np.int64).reshape(-1, 2)
        f["src_size"] = np.array([o.fingerprint["size"] for o in ok], dtype=np.int64)
        f["src_mtime_ns"] = np.array([o.fingerprint["mtime_ns"] for o in ok], dtype=np.int64)
        f.create_dataset("src_sha1", data=_strings(o.fingerprint["sha1"] for o in ok), dtype=_STR)
        f.create_dataset("warnings", data=_strings(json.dumps(o.warnings) for o in ok), dtype=_STR)
        f["failed_index"] = np.array([o.index for o in bad], dtype=np.int64)
        f.create_dataset("failed_reason", data=_strings(o.reason for o in bad), dtype=_STR)
    os.replace(tmp, final)
    return final


@dataclass
class _ShardVideo:
    shard: Path
    start: int
    nframes: int
    fps: float
    source_wh: tuple[int, int]
    size: int
    mtime_ns: int
    sha1: str
    warnings: list[str]


def _scan_shards(folder: Path) -> tuple[dict[int, _ShardVideo], dict[int, str], int]:
    """Read the finished shards of ``folder``: videos done, failures, next shard number.

    Leftover temporary shards (a build killed while writing) and unreadable shards are
    removed; their videos are decoded again.
    """
    done: dict[int, _ShardVideo] = {}
    failed: dict[int, str] = {}
    next_seq = 0
    for tmp in folder.glob("shard-*.h5.tmp"):
        tmp.unlink(missing_ok=True)
    for shard in sorted(folder.glob("shard-*.h5")):
        try:
            next_seq = max(next_seq, int(shard.stem.split("-")[1]) + 1)
            with h5py.File(shard, "r") as f:
                index = f["index"][()]
                nframes = f["nframes"][()]
                starts = np.concatenate([[0], np.cumsum(nframes)[:-1]]).astype(np.int64)
                fps, wh = f["fps"][()], f["source_wh"][()]
                sizes, mtimes = f["src_size"][()], f["src_mtime_ns"][()]
                sha1s, warns = _read_strings(f["src_sha1"]), _read_strings(f["warnings"])
                findex, freason = f["failed_index"][()], _read_strings(f["failed_reason"])
                if len(index) and f["frames"].shape[0] != int(nframes.sum()):
                    raise ValueError("frame count mismatch")
        except (OSError, KeyError, ValueError):
            shard.unlink(missing_ok=True)
            continue
        for k, i in enumerate(index.tolist()):
            done[i] = _ShardVideo(
                shard, int(starts[k]), int(nframes[k]), float(fps[k]), (int(wh[k][0]), int(wh[k][1])),
                int(sizes[k]), int(mtimes[k]), sha1s[k], json.loads(warns[k]),
            )
        for i, reason in zip(findex.tolist(), freason):
            failed[i] = reason
    return done, failed, next_seq


# ----------------------------------------------------------------------------- build


@dataclass
class BuildResult:
    """Outcome of :func:`build_cache`.

    ``path`` is the cache file, or ``None`` when no video could be cached; ``failed`` holds
    ``(relative path, reason)`` pairs; ``warnings`` one line per partially decodable video.
    """

    path: Path | None
    cached: int
    failed: list[tuple[str, str]]
    warnings: list[str]
    reused: bool = False


def _load_index(data_root: Path) -> Any:
    from cstp_cli.data.datasets import load_dataset

    return load_dataset(data_root)


def _index_key(index: Any, size: tuple[int, int], fps: float | None) -> str:
    """Hash of what a build depends on: the videos (path, size, mtime, label, splits),
    the build parameters and the format version (resume and reuse check it)."""
    h = hashlib.sha1()
    h.update(json.dumps([FORMAT_VERSION, list(size), fps, str(Path(index.root).resolve())]).encode())
    for v in index.videos:
        try:
            st = os.stat(v.path)
            stat = [st.st_size, st.st_mtime_ns]
        except OSError:
            stat = [-1, -1]
        splits = sorted((int(k), str(s)) for k, s in (v.splits or {}).items())
        label = -1 if v.label is None else int(v.label)
        h.update(json.dumps([str(v.rel), stat, label, str(v.group), splits]).encode("utf-8"))
    return h.hexdigest()


@contextlib.contextmanager
def _build_lock(out: Path):
    """Exclusive lock on ``<out>.lock`` so two processes (e.g. DDP ranks) never build one
    cache at the same time; the second waits, then finds the finished file."""
    lock = out.with_name(out.name + ".lock")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the output folder {folder}: {exc.strerror or exc}; choose another with -o") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CacheError(f"the output folder {folder} is not writable; choose another with -o")




def build_cache(
    data_root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    workers: int | None = None,
    compression: str = "none",
    fps: float | None = None,
    timeout: float = 120.0,
    progress: bool = True,
    *,
    index: Any = None,
    decode: Callable | None = None,
    reuse: bool = False,
    shard_videos: int = SHARD_VIDEOS,
    shard_bytes: int = SHARD_BYTES,
) -> BuildResult:
    """Decode every video of a dataset into one HDF5 cache (DESIGN "HDF5 cache").

    ``size`` is the frame size (W, H) every frame is resized to on decode; ``fps`` an
    optional frame-rate normalisation; ``workers`` decoder processes (default: CPU count,
    at most 8; ``0`` decodes in this process without timeout); ``timeout`` seconds per
    video; ``compression`` ``"none"`` or ``"lzf"``. ``out`` defaults to the cache folder's
    keyed name (:func:`cstp_cli.data.resolve.default_cache_path`). ``index`` is a prepared
    :class:`~cstp_cli.data.datasets.DatasetIndex` (else ``load_dataset(data_root)``), ``decode``
    a picklable ``decode(path, size, fps) -> Decoded`` (default :func:`cstp_cli.data.video.decode`).
    With ``reuse`` an existing complete cache of the same sources and parameters is kept.

    Every video with at least one decodable frame is cached; undecodable ones are returned
    in ``failed``. When nothing could be cached no file is written and ``path`` is None.
    Raises :class:`DataError` for a missing dataset, :class:`CacheError` for an unwritable
    output folder or bad parameters.
    """
    size = (int(size[0]), int(size[1]))
    if compression not in ("none", "lzf"):
        raise CacheError(f"unknown compression {compression!r}; use none or lzf")
    if fps is not None and not fps > 0:
        raise CacheError(f"--fps must be positive, got {fps}")
    if index is None:
        root = Path(data_root).expanduser()
        if not root.exists():
            raise DataError(f"dataset folder {root} does not exist; give a dataset folder or a cache file (.h5)")
        index = _load_index(root)
    if out is None:
        from cstp_cli.data.resolve import default_cache_path

        out = default_cache_path(index, size=size, fps=fps)
    out = Path(out).expanduser().absolute()
    _check_writable(out.parent)
    key = _index_key(index, size, fps)
    with _build_lock(out):
        if reuse and out.exists():
            with contextlib.suppress(CacheError):
                reader = CacheReader(out, size=size)
                if reader.attrs.get("source_key") == key and (reader.attrs.get("fps") or None) == fps:
                    return BuildResult(out, reader.num_videos, reader.failures, [], reused=True)
        return _build_locked(index, out, size, workers, compression, fps, timeout, progress, decode, key, shard_videos, shard_bytes)


def _build_locked(index, out, size, workers, compression, fps, timeout, progress, decode, key, shard_videos, shard_bytes) -> BuildResult:
    folder = shard_dir_for(out)
    manifest = {"format_version": FORMAT_VERSION, "size": list(size), "fps": fps, "key": key}
    manifest_path = folder / "manifest.json"
    if folder.exists():
        try:
            same = json.loads(manifest_path.read_text()) == manifest
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(folder)
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot write shards next to {out}: {exc.strerror or exc}; choose another folder with -o") from None
    if not manifest_path.exists():
        tmp = manifest_path.with_name("manifest.json.tmp")
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, manifest_path)

    done, failed, seq = _scan_shards(folder)
    jobs = [
        _Job(i, str(v.path), str(v.rel)) for i, v in enumerate(index.videos) if i not in done and i not in failed
    ]
    bar = Progress(len(index.videos), "caching", unit="videos", start=len(index.videos) - len(jobs), enabled=progress and bool(index.videos))
    failed_count = len(failed)
    buffer: list[_Outcome] = []
    buffered_bytes = 0

    def flush() -> None:
        nonlocal seq, buffer, buffered_bytes
        if buffer:
            try:
                _write_shard(folder, seq, buffer)
            except OSError as exc:
                raise CacheError(f"cannot write a shard in {folder}: {exc.strerror or exc}; free space or choose another folder with -o") from None
            seq, buffer, buffered_bytes = seq + 1, [], 0

    def on_outcome(o: _Outcome) -> None:
        nonlocal buffered_bytes, failed_count
        buffer.append(o)
        buffered_bytes += o.frames.nbytes if o.frames is not None else 0
        failed_count += o.reason is not None
        bar.update(suffix=f"{failed_count} failed")
        if len(buffer) >= shard_videos or buffered_bytes >= shard_bytes:
            flush()

    decode = decode or default_decode
    n_workers = min(8, os.cpu_count() or 1) if workers is None else int(workers)
    if jobs:
        if n_workers <= 0:
            _run_inline(jobs, decode, size, fps, on_outcome)
        else:
            _DecoderPool(n_workers, decode, size, fps, timeout).run(jobs, on_outcome)
    flush()
    bar.close()

    done, failed, _ = _scan_shards(folder)
    failures = [(str(index.videos[i].rel), failed[i]) for i in sorted(failed)]
    warnings = [str(w) for w in getattr(index, "warnings", None) or []]
    warnings += [f"{index.videos[i].rel}: {w}" for i in sorted(done) for w in done[i].warnings]
    if not done:
        shutil.rmtree(folder, ignore_errors=True)
        return BuildResult(None, 0, failures, warnings)
    try:
        _assemble(out, index, done, failed, size, fps, compression, key)
    except OSError as exc:
        raise CacheError(f"cannot write {out}: {exc.strerror or exc}; free space or choose another file with -o (finished shards are kept)") from None
    shutil.rmtree(folder, ignore_errors=True)
    return BuildResult(out, len(done), failures, warnings)


def _assemble(out: Path, index: Any, done: dict[int, _ShardVideo], failed: dict[int, str], size, fps, compression: str, key: str) -> None:
    """Copy the shards into the final file in dataset order; atomic rename when complete."""
    order = sorted(done)
    counts = np.array([done[i].nframes for i in order], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    w, h = size
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    videos = [index.videos[i] for i in order]
    folds = sorted({int(k) for v in index.videos for k in (v.splits or {})} | {int(k) for k in (getattr(index, "folds", None) or [])})
    # a dataset without folds (an unlabelled folder): fold 1 holds every video as train
    all_train = not folds
    folds = folds or [1]
    try:
        with h5py.File(tmp, "w", libver=("v110", "v110")) as f:
            frames = _create_frames(f, int(offsets[-1]), size, compression)
            _copy_frames(frames, [done[i] for i in order], offsets)
            frames_offset = _contiguous_offset(frames)
            g = f.create_group("videos")
            g["offsets"] = offsets
            g.create_dataset("path", data=_strings(v.rel for v in videos), dtype=_STR)
            g["label"] = np.array([-1 if v.label is None else int(v.label) for v in videos], dtype=np.int64)
            g["fps"] = np.array([done[i].fps for i in order], dtype=np.float64)
            g.create_dataset("group", data=_strings("" if v.group is None else v.group for v in videos), dtype=_STR)
            g["source_wh"] = np.array([done[i].source_wh for i in order], dtype=np.int64).reshape(-1, 2)
            g["src_size"] = np.array([done[i].size for i in order], dtype=np.int64)
            g["src_mtime_ns"] = np.array([done[i].mtime_ns for i in order], dtype=np.int64)
            g.create_dataset("src_sha1", data=_strings(done[i].sha1 for i in order), dtype=_STR)
            g.create_dataset("warnings", data=_strings(json.dumps(done[i].warnings) for i in order), dtype=_STR)
            s = f.create_group("splits")
            for k in folds:
                s[f"fold{k}"] = np.array(
                    [1 if all_train else _SPLIT_CODES.get(str((v.splits or {}).get(k, "unused")), 0) for v in videos],
                    dtype=np.int8,
                )
            f.create_dataset("classes", data=_strings(getattr(index, "classes", None) or []), dtype=_STR)
            fl = f.create_group("failures")
            fl.create_dataset("path", data=_strings(index.videos[i].rel for i in sorted(failed)), dtype=_STR)
            fl.create_dataset("reason", data=_strings(failed[i] for i in sorted(failed)), dtype=_STR)
            f.attrs.update(
                {
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "frame_width": w,
                    "frame_height": h,
                    "fps": float(fps or 0.0),
                    "compression": compression,
                    "chunk_frames": CHUNK_FRAMES,
                    "frames_offset": frames_offset,
                    "source_root": str(Path(index.root).resolve()),
                    "dataset_kind": str(getattr(index, "kind", "")),
                    "source_key": key,
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "versions": json.dumps(library_versions()),
                }
            )
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_frames(f: Any, n: int, size: tuple[int, int], compression: str) -> Any:
    """The ``frames`` dataset, chunked by ``CHUNK_FRAMES`` frames. Uncompressed: chunks
    allocated at creation (HDF5 ≥ 1.10 file format, fixed-array chunk index), so they lie
    end to end in the file and the reader can memory-map them."""
    w, h = size
    chunks = (min(CHUNK_FRAMES, n), h, w, 3)
    if compression != "none":
        return f.create_dataset("frames", shape=(n, h, w, 3), dtype=np.uint8, chunks=chunks, compression=compression)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return f.create_dataset("frames", shape=(n, h, w, 3), dtype=np.uint8, chunks=chunks, dcpl=dcpl)


def _contiguous_offset(frames: Any) -> int:
    """Byte offset of ``frames`` in its file when its data is uncompressed and its chunks
    lie in order, end to end (so frame i starts at ``offset + i·H·W·3``); else −1."""
    if frames.compression is not None or frames.id.get_create_plist().get_nfilters():
        return -1
    chunk_bytes = int(np.prod(frames.chunks))
    n_chunks = -(-frames.shape[0] // frames.chunks[0])
    found: list[tuple[int, int, int]] = []
    try:
        frames.id.chunk_iter(lambda c: found.append((c.chunk_offset[0], c.byte_offset, c.size)))
    except (AttributeError, RuntimeError):  # older HDF5: one query per chunk
        for k in range(frames.id.get_num_chunks()):
            c = frames.id.get_chunk_info(k)
            found.append((c.chunk_offset[0], c.byte_offset, c.size))
    if len(found) != n_chunks:
        return -1
    table = np.array(sorted(found), dtype=np.int64).reshape(-1, 3)
    start = int(table[0, 1])
    ok = (
        np.array_equal(table[:, 0], np.arange(n_chunks) * frames.chunks[0])
        and np.all(table[:, 2] == chunk_bytes)
        and np.array_equal(table[:, 1], start + np.arange(n_chunks) * chunk_bytes)
    )
    return start if ok else -1


def _copy_frames(dst: Any, parts: list[_ShardVideo], offsets: np.ndarray, block: int = 256) -> None:
    """Copy each video's frames from its shard into ``dst`` (a few shard handles kept open)."""
    handles: OrderedDict[Path, Any] = OrderedDict()
    try:
        for k, part in enumerate(parts):
            if part.shard not in handles:
                if len(handles) >= 8:
                    handles.popitem(last=False)[1].close()
                handles[part.shard] = h5py.File(part.shard, "r")
            handles.move_to_end(part.shard)
            src = handles[part.shard]["frames"]
            for a in range(0, part.nframes, block):
                b = min(part.nframes, a + block)
                dst[offsets[k] + a : offsets[k] + b] = src[part.start + a : part.start + b]
    finally:
        for fh in handles.values():
            fh.close()


# ----------------------------------------------------------------------------- read


class CacheReader:
    """Read-only view of a cache file; picklable, safe in DataLoader workers.

    The metadata (offsets, labels, splits, paths) is read once at construction; the HDF5
    handle is opened lazily on the first frame read in each process (h5py handles do not
    survive pickling or fork), tracked by ``os.getpid()``.

    ``size``: when given, a cache of another frame size is refused with a
    :class:`CacheError` (one line). A file of another format version is always refused.
    """

    def __init__(self, path: str | os.PathLike, size: tuple[int, int] | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise CacheError(f"cache file {self.path} does not exist; build one with `cstp cache build DATA -o {self.path}`")
        try:
            with h5py.File(self.path, "r") as f:
                self._load_meta(f)
        except OSError as exc:
            raise CacheError(f"{self.path} is not a readable HDF5 cache ({exc}); rebuild it with `cstp cache build`") from None
        except KeyError as exc:
            raise CacheError(f"{self.path} is a damaged cstp cache (missing {exc}); rebuild it with `cstp cache build`") from None
        if size is not None and tuple(int(s) for s in size) != self.frame_wh:
            w, h = int(size[0]), int(size[1])
            raise CacheError(
                f"{self.path} holds {format_size(self.frame_wh)} frames but {w}x{h} was asked for; "
                f"give a dataset folder or a cache built with --size {w}x{h}"
            )
        self._h5: Any = None
        self._dset: Any = None
        self._view: np.ndarray | None = None
        self._pid: int | None = None

    def _load_meta(self, f: Any) -> None:
        attrs = {k: _attr(v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT:
            raise CacheError(f"{self.path} is an HDF5 file but not a cstp cache; build one with `cstp cache build DATA`")
        version = attrs.get("format_version")
        if version != FORMAT_VERSION:
            raise CacheError(
                f"{self.path} is cache format version {version}, this cstp reads version {FORMAT_VERSION}; "
                "rebuild it with `cstp cache build`"
            )
        self.attrs: dict[str, Any] = attrs
        self.frame_wh: tuple[int, int] = (int(attrs["frame_width"]), int(attrs["frame_height"]))
        g = f["videos"]
        self._offsets = g["offsets"][()].astype(np.int64)
        self.num_frames: np.ndarray = np.diff(self._offsets)
        self.labels: np.ndarray = g["label"][()].astype(np.int64)
        self.fps: np.ndarray = g["fps"][()].astype(np.float64)
        self.paths: list[str] = _read_strings(g["path"])
        self.groups: list[str] = _read_strings(g["group"])
        self.classes: list[str] = _read_strings(f["classes"])
        self._splits = {int(name[4:]): ds[()].astype(np.int8) for name, ds in f["splits"].items()}
        self.failures: list[tuple[str, str]] = list(
            zip(_read_strings(f["failures/path"]), _read_strings(f["failures/reason"]))
        )
        self.total_frames = int(f["frames"].shape[0])

    # -- metadata
    @property
    def num_videos(self) -> int:
        return len(self.num_frames)

    @property
    def folds(self) -> list[int]:
        return sorted(self._splits)

    @property
    def offsets(self) -> np.ndarray:
        """int64 [V+1]: video v owns frames ``offsets[v]:offsets[v+1]`` of ``frames``."""
        return self._offsets

    def split(self, fold: int, which: str = "train") -> np.ndarray:
        """int64 indices of the videos in ``which`` (train/test/unused) of ``fold``."""
        if which not in _SPLIT_CODES:
            raise ValueError(f"split {which!r} is not one of train, test, unused")
        if int(fold) not in self._splits:
            known = ", ".join(map(str, self.folds)) or "none"
            raise CacheError(f"{self.path} has no fold {fold} (folds: {known})")
        return np.flatnonzero(self._splits[int(fold)] == _SPLIT_CODES[which]).astype(np.int64)

    # -- frames
    def _open(self) -> tuple[Any, np.ndarray | None]:
        """This process's ``frames`` dataset and, for an uncompressed cache whose chunks lie
        end to end (root attribute ``frames_offset`` ≥ 0), a read-only memory map of all
        frames (uint8 [N,H,W,3]); reopened after fork or unpickling (``os.getpid()``)."""
        if self._h5 is None or self._pid != os.getpid():
            w, h = self.frame_wh
            chunk = CHUNK_FRAMES * w * h * 3
            self._h5 = h5py.File(self.path, "r", rdcc_nbytes=max(1 << 20, 8 * chunk), rdcc_nslots=521)
            self._pid = os.getpid()
            self._dset = self._h5["frames"]
            self._view = None
            offset = int(self.attrs.get("frames_offset", -1))
            shape = (self.total_frames, h, w, 3)
            if offset >= 0 and self.total_frames and offset + int(np.prod(shape)) <= os.path.getsize(self.path):
                self._view = np.memmap(self.path, dtype=np.uint8, mode="r", offset=offset, shape=shape)
        return self._dset, self._view

    def read(self, video: int, idx: np.ndarray | Sequence[int], out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``idx`` (int [K], any order, repeats allowed) of ``video`` → uint8 [K,H,W,3]
        (written into ``out`` when given, e.g. a slot of a preallocated batch).

        Uncompressed caches are read from the memory map of their chunks (one gather);
        otherwise sorted distinct indices are grouped into runs whose gaps are at most
        ``MERGE_GAP`` frames, each run one contiguous h5py read (a lone frame: a
        single-frame read) — never h5py fancy or step selection. Raises ``IndexError``
        for an index outside ``[0, num_frames)``.
        """
        video = int(video)
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        n = int(self.num_frames[video])
        w, h = self.frame_wh
        if out is None:
            out = np.empty((idx.size, h, w, 3), np.uint8)
        elif out.shape != (idx.size, h, w, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise ValueError(f"out must be C-contiguous uint8 {(idx.size, h, w, 3)}, got {out.dtype} {out.shape}")
        if idx.size == 0:
            return out
        if idx.min() < 0 or idx.max() >= n:
            raise IndexError(f"frame index out of range [0, {n}) for video {video} of {self.path}")
        frames, view = self._open()
        base = int(self._offsets[video])
        if view is not None:
            np.take(view, idx + base, axis=0, out=out, mode="clip")  # bounds checked above
            return out
        self._read_runs(frames, base, idx, out)
        return out

    @staticmethod
    def _read_runs(frames: Any, base: int, idx: np.ndarray, out: np.ndarray) -> None:
        """h5py path: contiguous runs or single frames, whichever the span favours."""
        order = np.argsort(idx, kind="stable")
        srt = idx[order]
        breaks = np.flatnonzero(np.diff(srt) > MERGE_GAP + 1) + 1
        for a, b in zip(np.concatenate([[0], breaks]).tolist(), np.concatenate([breaks, [len(srt)]]).tolist()):
            lo, hi = int(srt[a]), int(srt[b - 1])
            block = frames[base + lo][None] if lo == hi else frames[base + lo : base + hi + 1]
            out[order[a:b]] = block[srt[a:b] - lo]

    def read_pair(self, video: int, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Both clips of a pair plan: ``idx`` int [2,T] → uint8 [2,T,H,W,3] (one read)."""
        idx = np.asarray(idx, dtype=np.int64)
        w, h = self.frame_wh
        if out is not None and not out.flags.c_contiguous:
            raise ValueError("out must be C-contiguous")
        flat = None if out is None else out.reshape(-1, h, w, 3)
        return self.read(video, idx.reshape(-1), flat).reshape(*idx.shape, h, w, 3)

    def close(self) -> None:
        """Close this process's handle (reopened on the next read)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = self._dset = self._view = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"], state["_dset"], state["_view"], state["_pid"] = None, None, None, None
        return state

    def __len__(self) -> int:
        return self.num_videos

    def __repr__(self) -> str:
        return f"CacheReader({str(self.path)!r}: {self.num_videos} videos, {format_size(self.frame_wh)})"


# ----------------------------------------------------------------------------- info, verify


def cache_info(path: str | os.PathLike) -> dict[str, Any]:
    """Summary of a cache: format version, size, videos per split, frames, bytes, build
    parameters, library versions and failures (plain Python types, JSON-serialisable)."""
    r = CacheReader(path)
    versions = r.attrs.get("versions")
    splits = {
        str(k): {which: int(len(r.split(k, which))) for which in ("train", "test", "unused")} for k in r.folds
    }
    return {
        "path": str(Path(path).resolve()),
        "format_version": r.attrs.get("format_version"),
        "frame_size": format_size(r.frame_wh),
        "videos": r.num_videos,
        "frames": int(r.total_frames),
        "bytes": int(os.path.getsize(path)),
        "classes": len(r.classes),
        "splits": splits,
        "build": {
            "size": format_size(r.frame_wh),
            "fps": r.attrs.get("fps") or None,
            "compression": r.attrs.get("compression"),
            "chunk_frames": r.attrs.get("chunk_frames"),
            "source_root": r.attrs.get("source_root"),
            "dataset_kind": r.attrs.get("dataset_kind"),
            "created": r.attrs.get("created"),
        },
        "versions": json.loads(versions) if isinstance(versions, str) else versions,
        "failures": [{"path": p, "reason": why} for p, why in r.failures],
    }


def verify_cache(path: str | os.PathLike, check_sources: bool = True) -> list[str]:
    """Problems of a cache, one line each (empty when sound): offsets monotone, starting
    at 0 and matching the ``frames`` length; table lengths and shapes; labels and split
    codes in range; the first and last frame readable; source fingerprints (size and
    SHA-1) against the current files where they still exist."""
    r = CacheReader(path)
    problems: list[str] = []
    w, h = r.frame_wh
    with h5py.File(r.path, "r") as f:
        frames = f["frames"]
        off = r.offsets
        v = len(off) - 1
        if frames.dtype != np.uint8 or frames.shape[1:] != (h, w, 3):
            problems.append(f"frames is {frames.shape} {frames.dtype}, expected (N, {h}, {w}, 3) uint8")
        if len(off) == 0 or off[0] != 0:
            problems.append("videos/offsets does not start at 0")
        if np.any(np.diff(off) <= 0):
            bad = int(np.flatnonzero(np.diff(off) <= 0)[0])
            problems.append(f"videos/offsets not strictly increasing (video {bad} has {int(off[bad + 1] - off[bad])} frames)")
        if len(off) and off[-1] != frames.shape[0]:
            problems.append(f"videos/offsets ends at {int(off[-1])} but frames holds {frames.shape[0]} frames")
        for name in ("path", "label", "fps", "group", "src_size", "src_sha1"):
            if f["videos"][name].shape[0] != v:
                problems.append(f"videos/{name} has {f['videos'][name].shape[0]} rows, expected {v}")
        for k, codes in r._splits.items():
            if len(codes) != v:
                problems.append(f"splits/fold{k} has {len(codes)} rows, expected {v}")
            if np.any((codes < 0) | (codes > 2)):
                problems.append(f"splits/fold{k} holds codes other than 0, 1, 2")
        if len(r.labels) == v and np.any((r.labels < -1) | (r.labels >= max(len(r.classes), 1))):
            problems.append(f"videos/label holds labels outside [-1, {len(r.classes)})")
        stored = int(r.attrs.get("frames_offset", -1))
        if stored >= 0 and stored != _contiguous_offset(frames):
            problems.append(f"attribute frames_offset={stored} does not match the chunk layout of frames")
        try:
            if frames.shape[0]:
                frames[0], frames[frames.shape[0] - 1]
        except OSError as exc:
            problems.append(f"frames cannot be read ({exc}); the file is truncated or damaged")
        if check_sources and not problems:
            problems += _check_sources(r, f)
    return problems


def _check_sources(r: CacheReader, f: Any) -> list[str]:
    root = Path(str(r.attrs.get("source_root", "")))
    sizes, shas = f["videos/src_size"][()], _read_strings(f["videos/src_sha1"])
    out = []
    for i, rel in enumerate(r.paths):
        src = root / rel
        if not src.exists():
            continue  # a cache may outlive or travel without its sources
        try:
            fp = source_fingerprint(src)
        except OSError:
            continue
        if fp["size"] != int(sizes[i]) or fp["sha1"] != shas[i]:
            out.append(f"{rel}: source file changed since the cache was built (fingerprint differs); rebuild the cache")
    return out


# --------------------------------------------------------------------------- feature files


FEATURES_FORMAT = "cstp-features"


def write_features(
    path: str | os.PathLike, features: np.ndarray, labels: np.ndarray, paths: Sequence[str], attrs: dict[str, Any]
) -> Path:
    """Write video features atomically as HDF5 (``cstp embed -o features.h5``).

    Datasets: ``features float32[V, F]``, ``labels int64[V]``, ``paths`` (UTF-8 strings);
    root attributes: ``format`` = ``"cstp-features"`` and ``attrs`` (JSON-able values;
    lists and dicts are stored as JSON text).
    """
    path = Path(path)
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if features.ndim != 2 or len(labels) != len(features) or len(paths) != len(features):
        raise CstpError(f"features {features.shape}, labels {labels.shape} and {len(paths)} paths do not agree")
    _check_writable(path.parent)
    from cstp_cli.core.fsutil import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("features", data=features)
        f.create_dataset("labels", data=labels)
        f.create_dataset("paths", data=_strings(paths), dtype=_STR)
        f.attrs["format"] = FEATURES_FORMAT
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value) if isinstance(value, (list, tuple, dict)) else value
    return path


def read_features(path: str | os.PathLike) -> dict[str, Any]:
    """Read a file of :func:`write_features`: ``features``, ``labels``, ``paths``, ``attrs``."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FEATURES_FORMAT:
                raise CacheError(f"{path} is not a cstp features file; write one with `cstp embed -o FILE.h5`")
            return {
                "features": f["features"][...],
                "labels": f["labels"][...],
                "paths": _read_strings(f["paths"]),
                "attrs": {k: _attr(v) for k, v in f.attrs.items() if k != "format"},
            }
    except OSError as exc:
        raise CacheError(f"{path}: cannot read features ({exc})") from exc
