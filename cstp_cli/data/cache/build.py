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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

from cstp_cli.core.fsutil import atomic_path, atomic_write_text
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
    library_versions,
    strings,
)
from cstp_cli.data.cache import jpegstore
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


def check_writable(folder: Path) -> None:
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
    Raises :class:`DataError` for a missing dataset, :class:`CacheError` for an unwritable
    output folder or bad parameters.
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
    check_writable(out.parent)
    key = index_key(index, size, fps, codec.spec)
    with _build_lock(out):
        if reuse and out.exists():
            with contextlib.suppress(CacheError):
                reader = CacheReader(out, size=size)
                if reader.codec == codec and reader.attrs.get("source_key") == key and (reader.attrs.get("fps") or None) == fps:
                    return BuildResult(out, reader.num_videos, reader.failures, [], reused=True)
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
            except OSError as exc:
                raise CacheError(f"cannot write a shard in {folder}: {exc.strerror or exc}; free space or choose another folder with -o") from None
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
    if jobs:
        if n_workers <= 0:
            run_inline(jobs, decode, size, fps, on_outcome, encode)
        else:
            DecoderPool(n_workers, decode, size, fps, timeout, encode).run(jobs, on_outcome)
    flush()
    bar.close()

    done, failed, _ = scan_shards(folder)
    failures = [(str(index.videos[i].rel), failed[i]) for i in sorted(failed)]
    warnings = [str(w) for w in getattr(index, "warnings", None) or []]
    warnings += [f"{index.videos[i].rel}: {w}" for i in sorted(done) for w in done[i].warnings]
    if not done:
        shutil.rmtree(folder, ignore_errors=True)
        return BuildResult(None, 0, failures, warnings)
    try:
        _assemble(out, index, done, failed, size, fps, compression, key, codec)
    except OSError as exc:
        raise CacheError(f"cannot write {out}: {exc.strerror or exc}; free space or choose another file with -o (finished shards are kept)") from None
    shutil.rmtree(folder, ignore_errors=True)
    return BuildResult(out, len(done), failures, warnings)


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
        with h5py.File(tmp, "w", libver=("v110", "v110")) as f:
            if codec.is_raw:
                frames = create_frames(f, int(offsets[-1]), size, compression)
                _copy_frames(frames, [done[i] for i in order], offsets)
                codec_attrs = {"frames_offset": contiguous_offset(frames)}
            else:
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


def _copy_frames(dst: Any, parts: list[ShardVideo], offsets: np.ndarray, block: int = 256) -> None:
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
