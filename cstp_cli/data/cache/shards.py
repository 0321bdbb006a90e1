"""Shard files of an unfinished build: finished batches of decoded videos, resumable.

A build writes every finished batch of :class:`~cstp_cli.data.decodepool.DecodeOutcome`
objects as ``shard-<seq>.h5`` (temporary name, then rename) in ``<out>.shards/``; a killed
build rescans them (:func:`scan_shards`) and decodes only what is missing. A jpeg build's
shards hold the encoded frames (``jpeg_data``, ``jpeg_offsets``) instead of ``frames``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from cstp_cli.data.cache.jpegstore import shard_frame_count, write_encoded
from cstp_cli.data.cache.layout import STR, guarded_h5, read_strings, strings
from cstp_cli.data.decodepool import DecodeOutcome

def shard_dir_for(out: Path) -> Path:
    """Folder holding the finished shards of an unfinished build of ``out``."""
    return out.with_name(out.name + ".shards")


def write_shard(folder: Path, seq: int, outcomes: list[DecodeOutcome]) -> Path:
    """Write a batch of outcomes as ``shard-<seq>.h5`` (temporary name, then rename).

    A failed write (full disk) raises ``OSError`` and leaves no temporary shard."""
    final = folder / f"shard-{seq:05d}.h5"
    tmp = folder / f"shard-{seq:05d}.h5.tmp"
    ok = sorted((o for o in outcomes if o.reason is None), key=lambda o: o.index)
    bad = sorted((o for o in outcomes if o.reason is not None), key=lambda o: o.index)
    with guarded_h5(tmp, remove_on_error=True) as f:
        if ok and ok[0].encoded is not None:
            write_encoded(f, [o.encoded for o in ok])
        elif ok:
            f.create_dataset("frames", data=np.concatenate([o.frames for o in ok]))
        f["index"] = np.array([o.index for o in ok], dtype=np.int64)
        f["nframes"] = np.array([o.nframes for o in ok], dtype=np.int64)
        f["fps"] = np.array([o.fps for o in ok], dtype=np.float64)
        f["source_wh"] = np.array([o.source_wh for o in ok], dtype=np.int64).reshape(-1, 2)
        f["src_size"] = np.array([o.fingerprint["size"] for o in ok], dtype=np.int64)
        f["src_mtime_ns"] = np.array([o.fingerprint["mtime_ns"] for o in ok], dtype=np.int64)
        f.create_dataset("src_sha1", data=strings(o.fingerprint["sha1"] for o in ok), dtype=STR)
        f.create_dataset("warnings", data=strings(json.dumps(o.warnings) for o in ok), dtype=STR)
        f["failed_index"] = np.array([o.index for o in bad], dtype=np.int64)
        f.create_dataset("failed_reason", data=strings(o.reason for o in bad), dtype=STR)
    os.replace(tmp, final)
    return final


@dataclass
class ShardVideo:
    shard: Path
    start: int
    nframes: int
    fps: float
    source_wh: tuple[int, int]
    size: int
    mtime_ns: int
    sha1: str
    warnings: list[str]
    sq_err: float = 0.0
    sq_n: int = 0


def scan_shards(folder: Path) -> tuple[dict[int, ShardVideo], dict[int, str], int]:
    """Read the finished shards of ``folder``: videos done, failures, next shard number.

    Leftover temporary shards (a build killed while writing) and unreadable shards are
    removed; their videos are decoded again.
    """
    done: dict[int, ShardVideo] = {}
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
                sha1s, warns = read_strings(f["src_sha1"]), read_strings(f["warnings"])
                findex, freason = f["failed_index"][()], read_strings(f["failed_reason"])
                if len(index) and shard_frame_count(f) != int(nframes.sum()):
                    raise ValueError("frame count mismatch")
                sq_err = f["jpeg_sq_err"][()] if "jpeg_sq_err" in f else np.zeros(len(index))
                sq_n = f["jpeg_sq_n"][()] if "jpeg_sq_n" in f else np.zeros(len(index), np.int64)
        except (OSError, KeyError, ValueError):
            shard.unlink(missing_ok=True)
            continue
        for k, i in enumerate(index.tolist()):
            done[i] = ShardVideo(
                shard, int(starts[k]), int(nframes[k]), float(fps[k]), (int(wh[k][0]), int(wh[k][1])),
                int(sizes[k]), int(mtimes[k]), sha1s[k], json.loads(warns[k]), float(sq_err[k]), int(sq_n[k]),
            )
        for i, reason in zip(findex.tolist(), freason):
            failed[i] = reason
    return done, failed, next_seq
