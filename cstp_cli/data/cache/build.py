"""Building a cache (DESIGN "HDF5 cache"): decode in parallel, shard, assemble, rename.

Videos are decoded by :class:`~cstp_cli.data.decodepool.DecoderPool` with a per-video
timeout; finished batches are written as shard files (:mod:`cstp_cli.data.cache.shards`),
so a killed build resumes from them; the final file is assembled from the shards in
dataset order and appears by atomic rename only when complete.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

from cstp_cli.core.fsutil import atomic_path, atomic_write_text, check_output_file
from cstp_cli.core.safewrite import write_failure
from cstp_cli.core.progress import Progress
from cstp_cli.data.cache.layout import (
    CHUNK_FRAMES,
    DEFAULT_SIZE,
    FORMAT,
    SHARD_BYTES,
    SHARD_VIDEOS,
    SPLIT_CODES,
    STR,
    contiguous_offset,
    create_frames,
    format_version_for,
    guarded_h5,
    library_versions,
    strings,
)
from cstp_cli.data.cache import jpegstore
from cstp_cli.data.cache.checksum import CHECKSUM, frames_digest
from cstp_cli.data.cache.codec import RAW, Codec, encoder_for, parse_codec
from cstp_cli.data.cache.naming import index_key
from cstp_cli.data.cache.reader import CacheReader
from cstp_cli.data.cache.shards import ShardVideo, scan_shards, shard_dir_for, write_shard
from cstp_cli.data.decodepool import DecodeJob, DecodeOutcome, DecoderPool, default_decode, run_inline
from cstp_cli.errors import CacheError, DataError

@dataclass
class BuildResult:
    """Outcome of :func:`build_cache`.

    ``path`` is the cache file, or ``None`` when no video could be cached; ``failed`` holds
    ``(relative path, reason)`` pairs; ``warnings`` one line per partially decodable video;
    ``skipped`` the other files under the dataset root that are not its videos, ``(relative
    path, reason)`` (:mod:`cstp_cli.data.inventory`).
    """

    path: Path | None
    cached: int
    failed: list[tuple[str, str]]
    warnings: list[str]
    reused: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _load_index(data_root: Path) -> Any:
    from cstp_cli.data.datasets import load_dataset

    return load_dataset(data_root)


@contextlib.contextmanager
def _build_lock(out: Path):
    """Exclusive lock on ``<out>.lock`` so two processes (e.g. DDP ranks) never build one
    cache at the same time; the second waits, then finds the finished file.

    The lock file is removed when the holder is done (success, failure or Ctrl+C). A
    waiter that then holds a lock on the removed file notices (the path no longer names
    the inode it locked) and locks the path again, so two builders never overlap.
    """
    lock = out.with_name(out.name + ".lock")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    while True:
        fh = open(lock, "a+")  # noqa: SIM115 - closed below
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                same = os.stat(lock).st_ino == os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            fh.close()
            raise
        if same:
            break
        fh.close()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files a killed build left beside ``out`` (``.<name>.*.tmp`` of
    :func:`~cstp_cli.core.fsutil.atomic_path`, ``<name>.tmp<pid>`` of older versions).
    Called under the build lock, when no other process writes ``out``."""
    for pattern in (f".{out.name}.*.tmp", f"{out.name}.tmp*"):
        for stale in out.parent.glob(pattern):
            with contextlib.suppress(OSError):
                stale.unlink()


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
    codec: "str | Codec" = "raw",
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
    ``codec``: ``raw`` (default) or ``jpeg[:QUALITY]`` — every frame a JPEG, encoded in the
    decoder processes (:mod:`cstp_cli.data.cache.codec`); ``compression`` applies to raw only.

    Every video with at least one decodable frame is cached; undecodable ones are returned
    in ``failed``. When nothing could be cached no file is written and ``path`` is None.
    Raises :class:`DataError` for a missing dataset, :class:`~cstp_cli.errors.UsageError`
    for an output that is a folder or cannot be written (checked before any decoding),
    :class:`CacheError` for bad parameters or a failed write (full disk: the finished
    shards are kept, so a rerun resumes). Ctrl+C writes the finished videos as a shard,
    then lets ``KeyboardInterrupt`` through; a rerun resumes.
    """
    size = (int(size[0]), int(size[1]))
    if compression not in ("none", "lzf"):
        raise CacheError(f"unknown compression {compression!r}; use none or lzf")
    codec = parse_codec(codec)
    if not codec.is_raw and compression != "none":
        raise CacheError(f"--compression {compression} applies to raw frames; a {codec.spec} cache is already compressed, drop --compression")
    if fps is not None and not fps > 0:
        raise CacheError(f"--fps must be positive, got {fps}")
    if index is None:
        root = Path(data_root).expanduser()
        if not root.exists():
            raise DataError(f"dataset folder {root} does not exist; give a dataset folder or a cache file (.h5)")
        index = _load_index(root)
    if out is None:
        from cstp_cli.data.resolve import default_cache_path

        out = default_cache_path(index, size=size, fps=fps, codec=codec.spec)
    out = Path(out).expanduser().absolute()
    check_output_file(out, "-o")  # a real write test, before the lock file and any decoding
    key = index_key(index, size, fps, codec.spec)
    with _build_lock(out):
        _remove_stale_temporaries(out)
        if reuse and out.exists():
            with contextlib.suppress(CacheError):
                reader = CacheReader(out, size=size)
                if reader.codec == codec and reader.attrs.get("source_key") == key and (reader.attrs.get("fps") or None) == fps:
                    return BuildResult(out, reader.num_videos, reader.failures, [], reused=True, skipped=reader.skipped)
        return _build_locked(index, out, size, workers, compression, fps, timeout, progress, decode, key, shard_videos, shard_bytes, codec)


def _build_locked(index, out, size, workers, compression, fps, timeout, progress, decode, key, shard_videos, shard_bytes, codec=RAW) -> BuildResult:
    folder = shard_dir_for(out)
    manifest = {"format_version": format_version_for(codec.name), "size": list(size), "fps": fps, "key": key}
    if not codec.is_raw:
        manifest["codec"] = codec.spec
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
        atomic_write_text(manifest_path, json.dumps(manifest))

    done, failed, seq = scan_shards(folder)
    jobs = [
        DecodeJob(i, str(v.path), str(v.rel)) for i, v in enumerate(index.videos) if i not in done and i not in failed
    ]
    bar = Progress(len(index.videos), "caching", unit="videos", start=len(index.videos) - len(jobs), enabled=progress and bool(index.videos))
    failed_count = len(failed)
    buffer: list[DecodeOutcome] = []
    buffered_bytes = 0

    def flush() -> None:
        nonlocal seq, buffer, buffered_bytes
        if buffer:
            try:
                write_shard(folder, seq, buffer)
            except (OSError, RuntimeError) as exc:  # h5py raises either on a failed write
                raise CacheError(
                    f"cannot write a shard in {folder}: {write_failure(exc)}; free space and rerun to resume, "
                    "or choose another folder with -o"
                ) from None
            seq, buffer, buffered_bytes = seq + 1, [], 0

    def on_outcome(o: DecodeOutcome) -> None:
        nonlocal buffered_bytes, failed_count
        buffer.append(o)
        buffered_bytes += o.payload_bytes
        failed_count += o.reason is not None
        bar.update(suffix=f"{failed_count} failed")
        if len(buffer) >= shard_videos or buffered_bytes >= shard_bytes:
            flush()

    decode = decode or default_decode
    n_workers = min(8, os.cpu_count() or 1) if workers is None else int(workers)
    encode = encoder_for(codec)
    try:
        if jobs:
            if n_workers <= 0:
                run_inline(jobs, decode, size, fps, on_outcome, encode)
            else:
                DecoderPool(n_workers, decode, size, fps, timeout, encode).run(jobs, on_outcome)
    except KeyboardInterrupt:
        bar.close()
        flush()  # keep the videos decoded so far: a rerun resumes after them
        raise
    flush()
    bar.close()

    done, failed, _ = scan_shards(folder)
    failures = [(str(index.videos[i].rel), failed[i]) for i in sorted(failed)]
    warnings = [str(w) for w in getattr(index, "warnings", None) or []]
    warnings += [f"{index.videos[i].rel}: {w}" for i in sorted(done) for w in done[i].warnings]
    skipped = [(str(p), str(why)) for p, why in getattr(index, "skipped", None) or []]
    if not done:
        shutil.rmtree(folder, ignore_errors=True)
        return BuildResult(None, 0, failures, warnings, skipped=skipped)
    try:
        _assemble(out, index, done, failed, size, fps, compression, key, codec)
    except (OSError, RuntimeError) as exc:  # h5py raises either on a failed write
        raise CacheError(
            f"cannot write {out}: {write_failure(exc)}; free space and rerun to resume "
            "(finished shards are kept), or choose another file with -o"
        ) from None
    shutil.rmtree(folder, ignore_errors=True)
    return BuildResult(out, len(done), failures, warnings, skipped=skipped)


def _assemble(out: Path, index: Any, done: dict[int, ShardVideo], failed: dict[int, str], size, fps, compression: str, key: str, codec: Codec = RAW) -> None:
    """Copy the shards into the final file in dataset order; atomic rename when complete."""
    order = sorted(done)
    counts = np.array([done[i].nframes for i in order], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    w, h = size
    videos = [index.videos[i] for i in order]
    folds = sorted({int(k) for v in index.videos for k in (v.splits or {})} | {int(k) for k in (getattr(index, "folds", None) or [])})
    # a dataset without folds (an unlabelled folder): fold 1 holds every video as train
    all_train = not folds
    folds = folds or [1]
    with atomic_path(out) as tmp:
        with guarded_h5(tmp, libver=("v110", "v110")) as f:
            if codec.is_raw:
                frames = create_frames(f, int(offsets[-1]), size, compression)
                checksums = _copy_frames(frames, [done[i] for i in order], offsets, f.check_writes)
                codec_attrs = {"frames_offset": contiguous_offset(frames), "checksum": CHECKSUM}
            else:  # jpeg: verify checks offsets and decodes; no per-video checksum column
                checksums = None
                codec_attrs = jpegstore.write_frames(f, [done[i] for i in order], codec)
            g = f.create_group("videos")
            g["offsets"] = offsets
            g.create_dataset("path", data=strings(v.rel for v in videos), dtype=STR)
            g["label"] = np.array([-1 if v.label is None else int(v.label) for v in videos], dtype=np.int64)
            g["fps"] = np.array([done[i].fps for i in order], dtype=np.float64)
            g.create_dataset("group", data=strings("" if v.group is None else v.group for v in videos), dtype=STR)
            g["source_wh"] = np.array([done[i].source_wh for i in order], dtype=np.int64).reshape(-1, 2)
            g["src_size"] = np.array([done[i].size for i in order], dtype=np.int64)
            g["src_mtime_ns"] = np.array([done[i].mtime_ns for i in order], dtype=np.int64)
            g.create_dataset("src_sha1", data=strings(done[i].sha1 for i in order), dtype=STR)
            g.create_dataset("warnings", data=strings(json.dumps(done[i].warnings) for i in order), dtype=STR)
            if checksums is not None:
                g.create_dataset("checksum", data=strings(checksums), dtype=STR)
            s = f.create_group("splits")
            for k in folds:
                s[f"fold{k}"] = np.array(
                    [1 if all_train else SPLIT_CODES.get(str((v.splits or {}).get(k, "unused")), 0) for v in videos],
                    dtype=np.int8,
                )
            f.create_dataset("classes", data=strings(getattr(index, "classes", None) or []), dtype=STR)
            fl = f.create_group("failures")
            fl.create_dataset("path", data=strings(index.videos[i].rel for i in sorted(failed)), dtype=STR)
            fl.create_dataset("reason", data=strings(failed[i] for i in sorted(failed)), dtype=STR)
            sk = f.create_group("skipped")  # other files under the root, not videos of the dataset
            sk.create_dataset("path", data=strings(p for p, _ in getattr(index, "skipped", None) or []), dtype=STR)
            sk.create_dataset("reason", data=strings(r for _, r in getattr(index, "skipped", None) or []), dtype=STR)
            f.attrs.update(
                {
                    "format": FORMAT,
                    "format_version": format_version_for(codec.name),
                    "frame_width": w,
                    "frame_height": h,
                    "fps": float(fps or 0.0),
                    "compression": compression,
                    "chunk_frames": CHUNK_FRAMES,
                    "source_root": str(Path(index.root).resolve()),
                    "dataset_kind": str(getattr(index, "kind", "")),
                    "source_key": key,
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "versions": json.dumps(library_versions()),
                    **codec_attrs,
                }
            )


def _copy_frames(dst: Any, parts: list[ShardVideo], offsets: np.ndarray, check_writes: Callable[[], None] = lambda: None, block: int = 256) -> list[str]:
    """Copy each video's frames from its shard into ``dst`` (a few shard handles kept open);
    return each video's checksum of the stored frame bytes (:mod:`.checksum`). A failed
    write (full disk) stops the copy after the block it hit (``check_writes``, see
    :func:`.layout.guarded_h5`)."""
    handles: OrderedDict[Path, Any] = OrderedDict()
    sums: list[str] = []
    try:
        for k, part in enumerate(parts):
            digest = frames_digest()
            if part.shard not in handles:
                if len(handles) >= 8:
                    handles.popitem(last=False)[1].close()
                handles[part.shard] = h5py.File(part.shard, "r")
            handles.move_to_end(part.shard)
            src = handles[part.shard]["frames"]
            for a in range(0, part.nframes, block):
                b = min(part.nframes, a + block)
                data = src[part.start + a : part.start + b]
                dst[offsets[k] + a : offsets[k] + b] = data
                digest.update(np.ascontiguousarray(data).data)
                check_writes()
            sums.append(digest.hexdigest())
    finally:
        for fh in handles.values():
            fh.close()
    return sums
