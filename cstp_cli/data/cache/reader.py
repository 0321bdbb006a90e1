"""Reading a cache: :class:`CacheReader`, picklable and safe in DataLoader workers.

The reader hides the codec: :meth:`CacheReader.read` returns uint8 frames from a raw or a
jpeg cache alike (a jpeg cache's named frames, and only those, are decoded on the CPU in
the reading process); :meth:`CacheReader.read_encoded` hands a jpeg cache's bytes to a
caller that decodes them elsewhere (on the GPU, :mod:`cstp_cli.engine.data`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from cstp_cli.core.options import format_size
from cstp_cli.data.cache import jpegstore
from cstp_cli.data.cache.codec import RAW, Codec, decode_cpu
from cstp_cli.data.cache.layout import CHUNK_FRAMES, FORMAT, MERGE_GAP, READ_VERSIONS, SPLIT_CODES, attr, read_strings
from cstp_cli.errors import CacheError

class CacheReader:
    """Read-only view of a cache file; picklable, safe in DataLoader workers.

    The metadata (offsets, labels, splits, paths) is read once at construction; the HDF5
    handle is opened lazily on the first frame read in each process (h5py handles do not
    survive pickling or fork), tracked by ``os.getpid()``.

    ``size``: when given, a cache of another frame size is refused with a
    :class:`CacheError` (one line). A file of another format version is always refused.
    ``codec`` (:class:`~cstp_cli.data.cache.codec.Codec`) says how the frames are stored.
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
        attrs = {k: attr(v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT:
            raise CacheError(f"{self.path} is an HDF5 file but not a cstp cache; build one with `cstp cache build DATA`")
        version = attrs.get("format_version")
        if version not in READ_VERSIONS:
            raise CacheError(
                f"{self.path} is cache format version {version}, this cstp reads versions "
                f"{', '.join(map(str, READ_VERSIONS))}; rebuild it with `cstp cache build`"
            )
        name = str(attrs.get("codec", "raw")) if version >= 2 else "raw"
        if name not in ("raw", "jpeg"):
            raise CacheError(f"{self.path} stores its frames as {name!r}, which this cstp cannot read; rebuild it with `cstp cache build`")
        self.codec: Codec = RAW if name == "raw" else Codec(name, int(attrs.get("jpeg_quality", 0)))
        self.attrs: dict[str, Any] = attrs
        self.frame_wh: tuple[int, int] = (int(attrs["frame_width"]), int(attrs["frame_height"]))
        g = f["videos"]
        self._offsets = g["offsets"][()].astype(np.int64)
        self.num_frames: np.ndarray = np.diff(self._offsets)
        self.labels: np.ndarray = g["label"][()].astype(np.int64)
        self.fps: np.ndarray = g["fps"][()].astype(np.float64)
        self.paths: list[str] = read_strings(g["path"])
        self.groups: list[str] = read_strings(g["group"])
        self.classes: list[str] = read_strings(f["classes"])
        self._splits = {int(name[4:]): ds[()].astype(np.int8) for name, ds in f["splits"].items()}
        self.failures: list[tuple[str, str]] = list(
            zip(read_strings(f["failures/path"]), read_strings(f["failures/reason"]))
        )
        self.skipped: list[tuple[str, str]] = (
            list(zip(read_strings(f["skipped/path"]), read_strings(f["skipped/reason"]))) if "skipped" in f else []
        )
        self.total_frames = int(f["frames"].shape[0]) if self.codec.is_raw else jpegstore.frame_count(f)

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
        if which not in SPLIT_CODES:
            raise ValueError(f"split {which!r} is not one of train, test, unused")
        if int(fold) not in self._splits:
            known = ", ".join(map(str, self.folds)) or "none"
            raise CacheError(f"{self.path} has no fold {fold} (folds: {known})")
        return np.flatnonzero(self._splits[int(fold)] == SPLIT_CODES[which]).astype(np.int64)

    def clip_warnings(self, frames: int, size: int, stride: int = 1, videos: Sequence[int] | None = None) -> list[str]:
        """Lines warning that clips of ``frames`` (T) frames taken every ``stride`` frames,
        ``size``×``size`` pixels (S), ask for more than this cache provides: S larger than
        the frames' shorter side (clips are upscaled), or videos (of ``videos``, default all)
        shorter than the T·stride frames a clip spans (their clips repeat frames). Empty
        when everything fits."""
        out = []
        w, h = self.frame_wh
        if int(size) > min(w, h):
            out.append(
                f"clip size {int(size)} is larger than the {format_size(self.frame_wh)} frames of {self.path.name}: "
                f"clips are upscaled; build a cache with a larger --size or lower the clip size"
            )
        span = int(frames) * max(1, int(stride))
        counts = self.num_frames if videos is None else self.num_frames[np.asarray(videos, dtype=np.int64)]
        short = int(np.sum(counts < span))
        if short:
            out.append(
                f"{short} of {len(counts)} videos in {self.path.name} have fewer than the {span} frames a clip of "
                f"T={int(frames)} spans (shortest: {int(counts.min())}); their clips repeat frames — lower T or use longer videos"
            )
        return out

    # -- frames
    def _open(self) -> tuple[Any, np.ndarray | None]:
        """This process's ``frames`` dataset and, for an uncompressed cache whose chunks lie
        end to end (root attribute ``frames_offset`` ≥ 0), a read-only memory map of all
        frames (uint8 [N,H,W,3]); reopened after fork or unpickling (``os.getpid()``)."""
        if self._h5 is None or self._pid != os.getpid():
            w, h = self.frame_wh
            if not self.codec.is_raw:
                self._h5 = h5py.File(self.path, "r")
                self._pid = os.getpid()
                self._dset, self._view = jpegstore.JpegFrames(self._h5, self.path, self.attrs), None
                return self._dset, None
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
        if not self.codec.is_raw:  # decode each distinct frame once
            unique, inverse = np.unique(idx, return_inverse=True)
            decoded = out if unique.size == idx.size and np.array_equal(unique, idx) else np.empty((unique.size, h, w, 3), np.uint8)
            decode_cpu(frames.blobs(unique + base), decoded, where=str(self.path))
            if decoded is not out:
                np.take(decoded, inverse.reshape(-1), axis=0, out=out)
            return out
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

    def read_encoded(self, video: int, idx: np.ndarray | Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
        """A jpeg cache's frames ``idx`` (int [K]) of ``video`` undecoded: the distinct
        frames' JPEG bytes (list of U uint8 arrays) and ``inverse`` int64 [K] (frame k of the
        request is blob ``inverse[k]``). Raises ``ValueError`` on a raw cache and
        ``IndexError`` for an index outside ``[0, num_frames)``."""
        if self.codec.is_raw:
            raise ValueError(f"{self.path} is a raw cache; use read()")
        video = int(video)
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        n = int(self.num_frames[video])
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"frame index out of range [0, {n}) for video {video} of {self.path}")
        frames, _ = self._open()
        unique, inverse = np.unique(idx, return_inverse=True)
        return frames.blobs(unique + int(self._offsets[video])), inverse.reshape(-1).astype(np.int64)

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
            self._dset = self._view = None  # memory maps of a jpeg cache go with their view
            self._h5.close()
        self._h5 = self._dset = self._view = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"], state["_dset"], state["_view"], state["_pid"] = None, None, None, None
        return state

    def __len__(self) -> int:
        return self.num_videos

    def __repr__(self) -> str:
        kind = "" if self.codec.is_raw else f", {self.codec.spec}"
        return f"CacheReader({str(self.path)!r}: {self.num_videos} videos, {format_size(self.frame_wh)}{kind})"
