"""Video decoding with PyAV (part of :mod:`cstp_cli.data.video`, the package that owns ``av``).

Everything FFmpeg reads is accepted (any container and codec), plus *frame folders* (a
directory of numbered images, ``%05d.jpg``). Frames come back as RGB ``uint8`` arrays of
shape ``[N, H, W, 3]``, resized on decode to one fixed ``W×H`` (DESIGN "HDF5 cache"; default
171×128, METHOD §0 writes sizes width×height).

Resize method (one, deterministic): FFmpeg's swscale through ``VideoFrame.reformat`` with
``AREA`` interpolation (an averaging filter, i.e. anti-aliased when shrinking, bilinear-like
when enlarging), converting to ``rgb24`` in the same call. Frame folders go through the same
call (each image is wrapped in a ``VideoFrame``), so both sources resize identically.

Header frame counts are never trusted: ``N`` is what decodes. A file that stops decoding
part-way (e.g. truncated) keeps its decodable prefix and gets a warning; a file with no
decodable frame raises :class:`~cstp_cli.errors.VideoDecodeError` with the reason.
``av`` is imported lazily, so ``import cstp_cli.data.video`` works without PyAV installed.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cstp_cli.errors import VideoDecodeError

#: Default cache frame size, width × height.
DEFAULT_SIZE = (171, 128)
#: Frame rate assumed for frame folders (they carry no timestamps).
FRAME_FOLDER_FPS = 25.0
#: swscale interpolation used for every resize.
INTERPOLATION = "AREA"

_FRAME_FILE = re.compile(r"^[A-Za-z_\-]*?(\d+)\.(?:jpe?g|png|bmp)$", re.IGNORECASE)
# A decoded span shorter than this fraction of the declared duration is reported as truncated.
_TRUNCATION_RATIO = 0.9


@dataclass
class Decoded:
    """A decoded video.

    frames: uint8 ``[N, H, W, 3]`` RGB, N ≥ 1. fps: the frame rate of ``frames`` (the
    requested one after normalisation). warnings: non-fatal problems (e.g. truncation).
    source_wh: the source frame size (width, height) before resizing.
    """

    frames: np.ndarray
    fps: float
    warnings: list[str] = field(default_factory=list)
    source_wh: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return int(self.frames.shape[0])


# --------------------------------------------------------------------------- helpers


def _av():
    try:
        import av  # noqa: PLC0415 - lazy on purpose: the one place cstp imports av
    except ImportError as exc:  # pragma: no cover - av is a dependency
        raise VideoDecodeError("<av>", f"PyAV is not installed ({exc}); pip install av") from exc
    return av


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """The numbered image files of a frame folder, in frame order (empty if none)."""
    entries = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        m = _FRAME_FILE.match(name)
        if m:
            entries.append((int(m.group(1)), name))
    entries.sort()
    return [Path(folder) / name for _, name in entries]


def is_frame_folder(path: str | os.PathLike) -> bool:
    """True for a directory holding numbered images (``00001.jpg`` …) and no sub-folders."""
    p = Path(path)
    if not p.is_dir():
        return False
    try:
        if any(child.is_dir() for child in p.iterdir()):
            return False
    except OSError:
        return False
    return bool(frame_files(p))


def _check_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    w, h = (int(v) for v in size)
    if w < 1 or h < 1:
        raise ValueError(f"size must be positive (width, height), got {size!r}")
    return w, h


def _to_rgb(frame, size: tuple[int, int]) -> np.ndarray:
    """One ``av.VideoFrame`` → uint8 ``[H, W, 3]`` RGB resized to ``size`` (W, H)."""
    w, h = size
    out = frame.reformat(width=w, height=h, format="rgb24", interpolation=INTERPOLATION)
    arr = out.to_ndarray()
    if arr.shape != (h, w, 3):  # defensive: some builds pad rows
        arr = np.ascontiguousarray(arr[:h, :w, :3])
    return arr


def _stack(frames: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    if not frames:
        return np.zeros((0, size[1], size[0], 3), np.uint8)
    return np.stack(frames)


def _preflight(path: Path) -> None:
    """Reasons that need no decoder: missing, dangling symlink, directory, empty file."""
    if not os.path.lexists(path):
        raise VideoDecodeError(str(path), "file not found")
    if path.is_symlink() and not path.exists():
        raise VideoDecodeError(str(path), f"dangling symbolic link (points to {os.readlink(path)})")
    if path.is_dir():
        raise VideoDecodeError(str(path), "is a directory, not a video file or a frame folder of numbered images")
    if path.stat().st_size == 0:
        raise VideoDecodeError(str(path), "empty file (0 bytes)")


def _open_error(path: Path, exc: Exception) -> VideoDecodeError:
    av = _av()
    if isinstance(exc, av.error.InvalidDataError):
        reason = "not a video FFmpeg can read (unknown format, corrupt or truncated header)"
    elif isinstance(exc, OSError) and exc.strerror:
        reason = f"cannot open ({exc.strerror}; truncated, damaged or unreadable file)"
    else:
        reason = f"cannot open ({type(exc).__name__}: {exc})"
    return VideoDecodeError(str(path), reason)


def _why(exc: Exception) -> str:
    """A short reason from an FFmpeg exception (its message without the file name)."""
    return getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"


def _stream_rate(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if math.isfinite(value) and 0 < value < 1000:
                return value
    return None


def _set_threads(stream, threads: bool) -> None:
    if threads:
        stream.thread_type = "AUTO"
        stream.thread_count = 0
    else:
        stream.thread_count = 1


# --------------------------------------------------------------------------- decode


def decode(
    path: str | os.PathLike,
    size: tuple[int, int] | None = DEFAULT_SIZE,
    fps: float | None = None,
    *,
    threads: bool = False,
) -> Decoded:
    """Decode a whole video (or frame folder) to RGB uint8 frames ``[N, H, W, 3]``.

    size: output (width, height); ``None`` keeps the first frame's size (later frames of
    another size are resized to it). fps: when given, resample to this frame rate by frame
    timestamps (the frame shown at each time ``k/fps``, so variable-frame-rate input comes
    out regular); otherwise keep every decoded frame. threads: let FFmpeg use several
    threads (off by default: the cache builder runs one decoder per process).

    Raises VideoDecodeError(path, reason) when no frame decodes.
    """
    p = Path(path)
    size = _check_size(size)
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be positive, got {fps!r}")
    if p.is_dir() and is_frame_folder(p):
        frames, times, rate, warnings, src_wh = _decode_frame_folder(p, size)
    else:
        _preflight(p)
        frames, times, rate, warnings, src_wh = _decode_file(p, size, threads, resample=fps is not None)
    if fps is not None:
        idx = resample_indices(times, fps, rate)
        frames = frames[idx]
        rate = float(fps)
    return Decoded(frames=frames, fps=float(rate), warnings=warnings, source_wh=src_wh)


def _decode_file(p: Path, size, threads: bool, resample: bool = False):
    av = _av()
    try:
        container = av.open(str(p), metadata_errors="ignore")
    except Exception as exc:  # noqa: BLE001 - every FFmpeg failure becomes a reason
        raise _open_error(p, exc) from None
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoDecodeError(str(p), f"no video stream (streams: {', '.join(kinds)})")
        stream = container.streams.video[0]
        _set_threads(stream, threads)
        rate = _stream_rate(stream)
        frames, times, warnings = [], [], []
        stopped = False
        target = size
        src_wh = (0, 0)
        try:
            for frame in container.decode(stream):
                if target is None:
                    target = (frame.width, frame.height)
                if not frames:
                    src_wh = (frame.width, frame.height)
                frames.append(_to_rgb(frame, target))
                times.append(frame.time)
        except Exception as exc:  # noqa: BLE001 - keep the decodable prefix
            if not frames:
                raise VideoDecodeError(str(p), f"no decodable video frame ({_why(exc)})") from None
            warnings.append(f"decoding stopped after {len(frames)} frames ({_why(exc)}); kept the decodable prefix")
            stopped = True
        if not frames:
            raise VideoDecodeError(str(p), "the video stream has no decodable frames")
        declared = _declared_seconds(container, stream)
    times_arr, rate, timing_warning = _clean_times(times, rate)
    if timing_warning and resample:
        warnings.append(timing_warning)
    if declared and not stopped:
        span = float(times_arr[-1] - times_arr[0]) + 1.0 / rate
        if span < _TRUNCATION_RATIO * declared:
            warnings.append(
                f"decoded {len(frames)} frames covering {span:.2f} s of the {declared:.2f} s the header declares "
                "(truncated or damaged file); kept the decodable prefix"
            )
    return _stack(frames, target), times_arr, rate, warnings, src_wh


def _declared_seconds(container, stream) -> float | None:
    """Duration the header claims (only used to warn about truncation)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:  # else audio may be the longer track
        return container.duration / 1_000_000
    return None


def _clean_times(times: list, rate: float | None):
    """Frame times (s, from 0) and a frame rate; falls back to ``index / rate`` when the
    timestamps are missing or not increasing."""
    n = len(times)
    if rate is None:
        valid = [t for t in times if t is not None]
        diffs = np.diff(valid) if len(valid) > 1 else np.array([])
        diffs = diffs[diffs > 0]
        rate = float(1.0 / np.median(diffs)) if diffs.size else 25.0
    if any(t is None for t in times):
        return np.arange(n) / rate, rate, "missing frame timestamps; assumed a constant frame rate"
    arr = np.asarray(times, dtype=np.float64)
    arr = arr - arr[0]
    if n > 1 and np.any(np.diff(arr) < 0):
        return np.arange(n) / rate, rate, "frame timestamps go backwards; assumed a constant frame rate"
    return arr, rate, None


def resample_indices(times: np.ndarray, fps: float, src_rate: float | None = None) -> np.ndarray:
    """Indices of the frames shown at times ``k / fps`` (k = 0, 1, …) — frame-rate
    normalisation by timestamps.

    times: float ``[N]`` seconds, non-decreasing, from 0. The clip lasts until the last
    frame's time plus one source frame (median spacing, else ``1/src_rate``); the output
    has ``round(duration · fps)`` frames (at least 1). Returns int64 ``[M]``.
    """
    times = np.asarray(times, dtype=np.float64)
    n = times.shape[0]
    diffs = np.diff(times)
    diffs = diffs[diffs > 0]
    last = float(np.median(diffs)) if diffs.size else 1.0 / (src_rate or fps)
    duration = float(times[-1] - times[0]) + last
    count = max(1, int(math.floor(duration * fps + 0.5)))
    targets = times[0] + np.arange(count) / fps
    idx = np.searchsorted(times, targets + 1e-9, side="right") - 1
    return np.clip(idx, 0, n - 1).astype(np.int64)


def _decode_frame_folder(p: Path, size):
    files = frame_files(p)
    av = _av()
    from PIL import Image  # noqa: PLC0415 - torchvision's dependency; only needed here

    frames, warnings = [], []
    target = size
    src_wh = (0, 0)
    for i, file in enumerate(files):
        try:
            with Image.open(file) as im:
                rgb = np.asarray(im.convert("RGB"))
        except Exception as exc:  # noqa: BLE001
            if not frames:
                raise VideoDecodeError(str(p), f"frame folder: cannot read {file.name} ({exc})") from None
            warnings.append(f"frame folder: stopped at {file.name} ({exc}); kept the first {i} frames")
            break
        if target is None:
            target = (rgb.shape[1], rgb.shape[0])
        if not frames:
            src_wh = (rgb.shape[1], rgb.shape[0])
        frames.append(_to_rgb(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"), target))
    if not frames:
        raise VideoDecodeError(str(p), "frame folder has no images")
    times = np.arange(len(frames)) / FRAME_FOLDER_FPS
    return _stack(frames, target), times, FRAME_FOLDER_FPS, warnings, src_wh
