"""The HDF5 layout of a cstp cache: constants, string tables, the ``frames`` dataset.

One flat ``frames`` dataset ``(N, H, W, 3) uint8`` chunked by :data:`CHUNK_FRAMES` frames,
per-video tables under ``videos/``, per-fold split codes under ``splits/``, ``classes``,
``failures/`` and root attributes; ``cache/README.md`` documents every name.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

import h5py
import numpy as np

from cstp_cli.core.safewrite import guarded_open

#: Value of the root attribute ``format``; a file without it is not a cstp cache.
FORMAT = "cstp-cache"


#: Bumped on any incompatible change of the layout; versions outside READ_VERSIONS are
#: refused. Raw caches are still written as version 1 (their layout is unchanged, so an older
#: cstp reads them and their keyed names stay valid); version 2 adds the root attribute
#: ``codec`` and the jpeg storage (:mod:`cstp_cli.data.cache.jpegstore`).
FORMAT_VERSION = 1


#: Format version of a cache whose frames are JPEGs (``--codec jpeg``).
JPEG_FORMAT_VERSION = 2


#: Format versions this cstp reads.
READ_VERSIONS = (1, 2)


def format_version_for(codec_name: str) -> int:
    """The format version a cache of ``codec_name`` (raw, jpeg) is written with."""
    return FORMAT_VERSION if codec_name == "raw" else JPEG_FORMAT_VERSION


#: Default frame size W×H (METHOD §0, the retrieval protocol's resize).
DEFAULT_SIZE: tuple[int, int] = (171, 128)


#: Frames per HDF5 chunk of ``frames``.
CHUNK_FRAMES = 4


#: Reading merges sorted frame indices whose gap is at most this many unread frames into
#: one contiguous read. Measured at 171×128 from the page cache (h5py 3.16): one slice
#: call costs ≈ 12 µs of overhead, one extra frame in a run ≈ 5 µs, so gaps of ≤ 2 frames
#: are cheaper to read through (pace 1–2 → runs, pace ≥ 4 → single frames).
MERGE_GAP = 2


#: Shard flush thresholds of a build (whichever is reached first).
SHARD_VIDEOS = 32


SHARD_BYTES = 256 << 20


STR = h5py.string_dtype("utf-8")


SPLIT_CODES = {"unused": 0, "train": 1, "test": 2}


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


def strings(values: Iterable[Any]) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=object)


def read_strings(ds: Any) -> list[str]:
    return list(ds.asstr()[()]) if ds.shape and ds.shape[0] else []


def attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


@contextmanager
def guarded_h5(path: str | os.PathLike, remove_on_error: bool = False, **kwargs: Any) -> Iterator[Any]:
    """``h5py.File(path, "w", **kwargs)`` written through a
    :class:`~cstp_cli.core.safewrite.GuardedFile`: a failed write (full disk) raises
    ``OSError`` after HDF5 has closed the file, instead of crashing the process (HDF5 2.0
    segfaults on flush/close after a failed write). ``remove_on_error`` deletes ``path``
    when the block fails (callers under ``atomic_path`` need not). The yielded file has
    ``f.check_writes()``: raise the first failed write now (for long write loops)."""
    try:
        with guarded_open(path) as fh, h5py.File(fh, "w", **kwargs) as f:
            f.check_writes = fh.check
            yield f
    except BaseException:
        if remove_on_error:
            Path(path).unlink(missing_ok=True)
        raise


def create_frames(f: Any, n: int, size: tuple[int, int], compression: str) -> Any:
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


def contiguous_offset(frames: Any) -> int:
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
