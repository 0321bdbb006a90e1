"""Describing and checking a cache: ``cstp cache info`` and ``cstp cache verify``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cstp_cli.core.options import format_size
from cstp_cli.data.cache import jpegstore
from cstp_cli.data.cache.checksum import stored_checksum
from cstp_cli.data.cache.layout import contiguous_offset, read_strings
from cstp_cli.data.cache.reader import CacheReader
from cstp_cli.data.decodepool import source_fingerprint

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
        "codec": codec_summary(r),
        "versions": json.loads(versions) if isinstance(versions, str) else versions,
        "failures": [{"path": p, "reason": why} for p, why in r.failures],
        "skipped": [{"path": p, "reason": why} for p, why in r.skipped],
    }


def codec_summary(r: CacheReader) -> dict[str, Any]:
    """How the frames are stored: codec spec, stored bytes per frame, the raw bytes per frame
    and the PSNR vs raw of the frames decoded back at build (jpeg; ``None`` for raw)."""
    w, h = r.frame_wh
    raw = w * h * 3
    if r.codec.is_raw:  # stored bytes: smaller than raw for an lzf cache
        with h5py.File(r.path, "r") as f:
            stored = int(f["frames"].id.get_storage_size()) / max(r.total_frames, 1)
        return {"codec": "raw", "bytes_per_frame": round(stored, 1), "raw_bytes_per_frame": raw, "psnr_db": None}
    with h5py.File(r.path, "r") as f:
        nbytes = int(f["jpeg/data"].shape[0])
    value = r.attrs.get("jpeg_psnr_db")
    return {
        "codec": r.codec.spec,
        "bytes_per_frame": round(nbytes / max(r.total_frames, 1), 1),
        "raw_bytes_per_frame": raw,
        "psnr_db": None if value is None or not np.isfinite(value) else round(float(value), 2),
        "psnr_sample_values": int(r.attrs.get("jpeg_psnr_values", 0)),
        "subsampling": r.attrs.get("jpeg_subsampling"),
    }
def verify_cache(path: str | os.PathLike, check_sources: bool = True, notes: list[str] | None = None) -> list[str]:
    """Problems of a cache, one line each (empty when sound): offsets monotone, starting
    at 0 and matching the ``frames`` length; table lengths and shapes; labels and split
    codes in range; the first and last frame readable; each video's checksum of its
    stored frames (:mod:`.checksum`); source fingerprints (size and SHA-1) against the
    current files where they still exist. ``notes`` (when given) receives lines that are
    not problems, e.g. that an older cache has no checksums to check."""
    r = CacheReader(path)
    problems: list[str] = []
    w, h = r.frame_wh
    with h5py.File(r.path, "r") as f:
        if not r.codec.is_raw:
            return _verify_tables(r, f, r.total_frames, jpegstore.verify(f, r.total_frames, (h, w)), check_sources)
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
        if stored >= 0 and stored != contiguous_offset(frames):
            problems.append(f"attribute frames_offset={stored} does not match the chunk layout of frames")
        try:
            if frames.shape[0]:
                frames[0], frames[frames.shape[0] - 1]
        except OSError as exc:
            problems.append(f"frames cannot be read ({exc}); the file is truncated or damaged")
        if not problems:
            problems += _check_checksums(r, f, notes if notes is not None else [])
        if check_sources and not problems:
            problems += _check_sources(r, f)
    return problems


def _verify_tables(r: CacheReader, f: Any, total: int, problems: list[str], check_sources: bool) -> list[str]:
    """The checks of a jpeg cache beyond its frame storage: offsets, table lengths, labels,
    split codes and (when sound) the source fingerprints."""
    off, v = r.offsets, len(r.offsets) - 1
    if len(off) == 0 or off[0] != 0:
        problems.append("videos/offsets does not start at 0")
    if np.any(np.diff(off) <= 0):
        problems.append("videos/offsets not strictly increasing")
    if len(off) and off[-1] != total:
        problems.append(f"videos/offsets ends at {int(off[-1])} but the cache holds {total} frames")
    for name in ("path", "label", "fps", "group", "src_size", "src_sha1"):
        if f["videos"][name].shape[0] != v:
            problems.append(f"videos/{name} has {f['videos'][name].shape[0]} rows, expected {v}")
    for k, codes in r._splits.items():
        if len(codes) != v or np.any((codes < 0) | (codes > 2)):
            problems.append(f"splits/fold{k} has {len(codes)} rows (expected {v}) or codes other than 0, 1, 2")
    if len(r.labels) == v and np.any((r.labels < -1) | (r.labels >= max(len(r.classes), 1))):
        problems.append(f"videos/label holds labels outside [-1, {len(r.classes)})")
    if check_sources and not problems:
        problems += _check_sources(r, f)
    return problems


def _check_checksums(r: CacheReader, f: Any, notes: list[str]) -> list[str]:
    if "checksum" not in f["videos"]:
        notes.append("no frame checksums stored (built by an older cstp); frames not checked — rebuild to add them")
        return []
    sums = read_strings(f["videos/checksum"])
    if len(sums) != r.num_videos:
        return [f"videos/checksum has {len(sums)} rows, expected {r.num_videos}"]
    out = []
    off = r.offsets
    for i, expected in enumerate(sums):
        try:
            got = stored_checksum(f["frames"], int(off[i]), int(off[i + 1]))
        except OSError as exc:
            out.append(f"{r.paths[i]}: frames cannot be read ({exc}); the file is damaged")
            continue
        if got != expected:
            out.append(f"{r.paths[i]}: stored frames do not match their checksum (damaged); rebuild the cache")
    return out


def _check_sources(r: CacheReader, f: Any) -> list[str]:
    root = Path(str(r.attrs.get("source_root", "")))
    sizes, shas = f["videos/src_size"][()], read_strings(f["videos/src_sha1"])
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
