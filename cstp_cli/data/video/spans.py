"""Decoding a span of frames ``[start, stop)`` without decoding the whole video (the
decode-on-the-fly baseline of ``bench/data_pipeline.py`` and single-clip reads)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cstp_cli.data.video.decode import (
    DEFAULT_SIZE,
    _av,
    _check_size,
    _open_error,
    _preflight,
    _set_threads,
    _stack,
    _to_rgb,
    frame_files,
    is_frame_folder,
)
from cstp_cli.errors import VideoDecodeError


def decode_span(
    path: str | os.PathLike,
    start: int,
    stop: int,
    size: tuple[int, int] | None = DEFAULT_SIZE,
    threads: bool = True,
) -> np.ndarray:
    """Frames ``[start, stop)`` as uint8 ``[stop-start, H, W, 3]`` (fewer if the video is
    shorter), decoded the way a good decode-on-the-fly loader does: seek to the keyframe
    before ``start``, decode only up to frame ``stop-1``, threaded decoding, the same
    resize as :func:`decode`. Frame ``i`` is the i-th frame :func:`decode` returns (native
    rate), located by its timestamp on a constant-frame-rate stream; streams without
    usable timestamps are decoded from the beginning and counted.
    """
    p = Path(path)
    size = _check_size(size)
    start, stop = int(start), int(stop)
    if start < 0 or stop < start:
        raise ValueError(f"need 0 <= start <= stop, got [{start}, {stop})")
    if p.is_dir() and is_frame_folder(p):
        return _span_frame_folder(p, start, stop, size)
    _preflight(p)
    if stop == start:
        w, h = size or (0, 0)
        return np.zeros((0, h, w, 3), np.uint8)
    av = _av()
    try:
        container = av.open(str(p), metadata_errors="ignore")
    except Exception as exc:  # noqa: BLE001
        raise _open_error(p, exc) from None
    with container:
        if not container.streams.video:
            raise VideoDecodeError(str(p), "no video stream")
        stream = container.streams.video[0]
        _set_threads(stream, threads)
        frames = _span_by_seek(container, stream, start, stop, size)
        if frames is None:
            container.seek(0, stream=stream)
            frames = _span_by_count(container, stream, start, stop, size)
    return frames


def _span_by_seek(container, stream, start, stop, size):
    """Seek + timestamp indexing; ``None`` when the stream does not allow it."""
    rate = stream.average_rate or stream.guessed_rate
    tb = stream.time_base
    if not rate or not tb:
        return None
    if "avi" in container.format.name and stream.codec_context.has_b_frames:
        return None  # AVI stores decode times, not presentation times, for B-frames
    step = 1 / (rate * tb)  # frame duration in stream time-base units (a Fraction)
    first = stream.start_time or 0
    if start > 0:
        container.seek(int(first + start * step), backward=True, any_frame=False, stream=stream)
    out: list[np.ndarray] = []
    target = size
    previous = None
    for frame in container.decode(stream):
        if frame.pts is None or (previous is not None and frame.pts <= previous):
            return None  # missing or non-increasing timestamps: count instead
        idx = round((frame.pts - first) / step)
        if previous is None and idx > start:  # seek overshot: count instead
            return None
        previous = frame.pts
        if target is None:
            target = (frame.width, frame.height)
        if idx >= stop:
            break
        if idx >= start:
            if idx != start + len(out):  # gap or duplicate: timestamps not regular
                return None
            out.append(_to_rgb(frame, target))
    return _stack(out, target or (0, 0))


def _span_by_count(container, stream, start, stop, size):
    out: list[np.ndarray] = []
    target = size
    for i, frame in enumerate(container.decode(stream)):
        if i >= stop:
            break
        if target is None:
            target = (frame.width, frame.height)
        if i >= start:
            out.append(_to_rgb(frame, target))
    return _stack(out, target or (0, 0))


def _span_frame_folder(p: Path, start, stop, size):
    av = _av()
    from PIL import Image  # noqa: PLC0415

    out: list[np.ndarray] = []
    target = size
    for file in frame_files(p)[start:stop]:
        with Image.open(file) as im:
            rgb = np.ascontiguousarray(np.asarray(im.convert("RGB")))
        target = target or (rgb.shape[1], rgb.shape[0])
        out.append(_to_rgb(av.VideoFrame.from_ndarray(rgb, format="rgb24"), target))
    return _stack(out, target or (0, 0))
