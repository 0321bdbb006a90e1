"""Storage of a jpeg cache's frames in HDF5 (format version 2, ``cache/README.md``).

Layout: ``jpeg/data`` uint8 [total bytes] and ``jpeg/offsets`` int64 [N+1] (frame i of the
cache — video v's frame j is ``i = videos/offsets[v] + j`` — is
``data[offsets[i]:offsets[i+1]]``), both contiguous (unchunked, uncompressed), so a reader
memory-maps them and reading a frame's bytes costs no h5py call; root attributes
``codec = "jpeg"``, ``jpeg_quality``, ``jpeg_subsampling``, ``jpeg_psnr_db`` (of the frames
decoded back at build, vs raw) and the file offsets of both datasets. The ``videos/``,
``splits/``, ``classes`` and ``failures/`` tables are those of a raw cache.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cstp_cli.data.cache.codec import Codec, EncodedFrames, decode_cpu, psnr_from

#: Bytes copied per write when assembling the final file from the shards.
COPY_BLOCK = 64 << 20


def write_encoded(f: Any, parts: Sequence[EncodedFrames]) -> None:
    """Shard side: the encoded frames of several videos, concatenated (``jpeg_data``, with
    ``jpeg_offsets`` [frames+1] into it) plus each video's squared-error sample."""
    sizes = np.concatenate([np.diff(p.offsets) for p in parts]).astype(np.int64)
    offsets = np.zeros(len(sizes) + 1, np.int64)
    offsets[1:] = np.cumsum(sizes)
    f.create_dataset("jpeg_data", data=np.concatenate([p.data for p in parts]))
    f["jpeg_offsets"] = offsets
    f["jpeg_sq_err"] = np.array([p.sq_err for p in parts], dtype=np.float64)
    f["jpeg_sq_n"] = np.array([p.sq_n for p in parts], dtype=np.int64)


def shard_frame_count(f: Any) -> int:
    """Frames held by a shard file of either kind."""
    if "jpeg_offsets" in f:
        off = f["jpeg_offsets"]
        if f["jpeg_data"].shape[0] != int(off[-1]):
            raise ValueError("jpeg byte count mismatch")
        return int(off.shape[0]) - 1
    return int(f["frames"].shape[0])


def write_frames(f: Any, parts: Sequence[Any], codec: Codec) -> dict[str, Any]:
    """Final file: copy every video's encoded frames from its shard (``parts``: ShardVideo
    in cache order) into ``jpeg/data`` and ``jpeg/offsets``; return the root attributes."""
    handles: OrderedDict[Path, Any] = OrderedDict()

    def shard(path: Path) -> Any:
        if path not in handles:
            if len(handles) >= 8:
                handles.popitem(last=False)[1].close()
            handles[path] = h5py.File(path, "r")
        handles.move_to_end(path)
        return handles[path]

    try:
        spans, sizes = [], []
        for part in parts:
            off = shard(part.shard)["jpeg_offsets"][part.start : part.start + part.nframes + 1]
            spans.append((int(off[0]), int(off[-1])))
            sizes.append(np.diff(off))
        sizes_all = np.concatenate(sizes).astype(np.int64)
        offsets = np.zeros(len(sizes_all) + 1, dtype="<i8")
        offsets[1:] = np.cumsum(sizes_all)
        g = f.create_group("jpeg")
        data = g.create_dataset("data", shape=(int(offsets[-1]),), dtype=np.uint8)
        pos = 0
        for part, (a, b) in zip(parts, spans):
            src = shard(part.shard)["jpeg_data"]
            for lo in range(a, b, COPY_BLOCK):
                hi = min(b, lo + COPY_BLOCK)
                data[pos : pos + hi - lo] = src[lo:hi]
                pos += hi - lo
        g.create_dataset("offsets", data=offsets, dtype="<i8")
        data_offset, offsets_offset = g["data"].id.get_offset(), g["offsets"].id.get_offset()
    finally:
        for fh in handles.values():
            fh.close()
    sq_err = float(sum(p.sq_err for p in parts))
    sq_n = int(sum(p.sq_n for p in parts))
    return {
        "codec": codec.name,
        "jpeg_quality": int(codec.quality),
        "jpeg_subsampling": "4:4:4",
        "jpeg_psnr_db": psnr_from(sq_err, sq_n),
        "jpeg_psnr_values": sq_n,
        "jpeg_data_offset": -1 if data_offset is None else int(data_offset),
        "jpeg_offsets_offset": -1 if offsets_offset is None else int(offsets_offset),
        "frames_offset": -1,
    }


def frame_count(f: Any) -> int:
    """Frames of an open jpeg cache file."""
    return int(f["jpeg/offsets"].shape[0]) - 1


class JpegFrames:
    """This process's view of a jpeg cache's frame bytes: memory maps of ``jpeg/data`` and
    ``jpeg/offsets`` when they lie contiguous in the file (always, for files cstp writes),
    else h5py reads. ``blobs(frames)`` → list of uint8 arrays (one JPEG each)."""

    def __init__(self, h5: Any, path: Path, attrs: dict[str, Any]):
        self._data_ds, self._off_ds = h5["jpeg/data"], h5["jpeg/offsets"]
        self._data: Any = None
        self._off: Any = None
        size = os.path.getsize(path)
        nbytes, n1 = int(self._data_ds.shape[0]), int(self._off_ds.shape[0])
        d_off, o_off = int(attrs.get("jpeg_data_offset", -1)), int(attrs.get("jpeg_offsets_offset", -1))
        if 0 <= d_off and d_off + nbytes <= size and nbytes:
            self._data = np.memmap(path, dtype=np.uint8, mode="r", offset=d_off, shape=(nbytes,))
        if 0 <= o_off and o_off + 8 * n1 <= size:
            self._off = np.memmap(path, dtype="<i8", mode="r", offset=o_off, shape=(n1,))

    def blobs(self, frames: np.ndarray) -> list[np.ndarray]:
        """Bytes of cache frames ``frames`` (int [K], global indices) as K uint8 arrays."""
        out = []
        for i in np.asarray(frames, dtype=np.int64).tolist():
            if self._off is not None:
                a, b = int(self._off[i]), int(self._off[i + 1])
            else:
                a, b = (int(x) for x in self._off_ds[i : i + 2])
            out.append(np.asarray(self._data[a:b]) if self._data is not None else self._data_ds[a:b])
        return out


def verify(f: Any, total_frames: int, frame_hw: tuple[int, int]) -> list[str]:
    """Problems of a jpeg cache's frame storage, one line each: offsets start at 0, never
    decrease, end at the byte count and hold one entry per frame; the first and last frame
    decode to the cache's frame size."""
    problems: list[str] = []
    if "jpeg" not in f or "data" not in f["jpeg"] or "offsets" not in f["jpeg"]:
        return ["the jpeg cache has no jpeg/data or jpeg/offsets dataset; rebuild it"]
    data, off = f["jpeg/data"], f["jpeg/offsets"][()]
    if data.dtype != np.uint8 or data.ndim != 1:
        problems.append(f"jpeg/data is {data.shape} {data.dtype}, expected 1-D uint8")
    if len(off) != total_frames + 1:
        problems.append(f"jpeg/offsets has {len(off)} entries, expected {total_frames + 1} (frames + 1)")
    if len(off) and off[0] != 0:
        problems.append("jpeg/offsets does not start at 0")
    if np.any(np.diff(off) <= 0):
        problems.append(f"jpeg/offsets not strictly increasing (frame {int(np.flatnonzero(np.diff(off) <= 0)[0])} is empty)")
    if len(off) and int(off[-1]) != data.shape[0]:
        problems.append(f"jpeg/offsets ends at {int(off[-1])} but jpeg/data holds {data.shape[0]} bytes")
    if problems or total_frames == 0:
        return problems
    h, w = frame_hw
    try:
        ends = sorted({0, total_frames - 1})
        blobs = [data[int(off[i]) : int(off[i + 1])] for i in ends]
        decode_cpu(blobs, np.empty((len(ends), h, w, 3), np.uint8), where=str(f.filename))
    except Exception as exc:  # noqa: BLE001 - CacheError from the decoder, OSError from a truncated file
        problems.append(f"jpeg frames cannot be decoded ({exc})")
    return problems
