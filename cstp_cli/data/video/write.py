"""Writing videos with PyAV (tests, the synthetic dataset, benchmarks): frames to a file.

:func:`write_video` encodes uint8 RGB frames ``[N, H, W, 3]`` into the container the
extension names (:data:`CONTAINER_FORMATS` maps the ones FFmpeg does not guess);
:func:`write_audio_only` writes a file without a video stream.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cstp_cli.data.video.decode import _av

#: Extension → FFmpeg muxer, where the extension alone does not pick it.
CONTAINER_FORMATS = {
    ".mp4": "mp4", ".m4v": "mp4", ".mkv": "matroska", ".avi": "avi", ".divx": "avi", ".mov": "mov", ".webm": "webm",
    ".ogv": "ogg", ".ogg": "ogg", ".ts": "mpegts", ".mts": "mpegts", ".m2ts": "mpegts", ".3gp": "3gp", ".3g2": "3g2",
    ".mxf": "mxf", ".y4m": "yuv4mpegpipe", ".asf": "asf", ".wmv": "asf", ".vob": "vob", ".f4v": "f4v", ".flv": "flv",
    ".m2v": "mpeg2video", ".mpg": "mpeg", ".mpeg": "mpeg", ".nut": "nut", ".dv": "dv",
}


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float = 25,
    codec: str = "libx264",
    lossless: bool = False,
    *,
    crf: int | None = None,
    gop: int | None = None,
    pts: np.ndarray | None = None,
    pix_fmt: str | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Write uint8 RGB frames ``[N, H, W, 3]`` as a video file; returns the path.

    Default: H.264 (``libx264``, yuv420p, or yuv444p when W or H is odd) in the container
    the extension names (``.mp4``). ``lossless=True`` writes ``libx264rgb`` at qp 0 in
    rgb24, which decodes back bit-exact (tested). ``crf``: x264 quality (lossy only);
    ``gop``: keyframe interval (encoder default otherwise); ``pts``: optional int64 ``[N]``
    presentation times in milliseconds (variable frame rate; ``fps`` is then only the
    nominal rate); ``pix_fmt`` overrides the stream's pixel format (e.g. ``gray``). Other codecs (``ffv1``, ``mpeg4``, …) are passed through with
    ``options``. Single-threaded encoding, so the bytes are deterministic. The file is
    written under a temporary name in the same folder and renamed into place.
    """
    av = _av()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
        raise ValueError(f"frames must be uint8 [N>0, H, W, 3], got {frames.dtype} {frames.shape}")
    path = Path(path)
    _, h, w, _ = frames.shape
    opts = dict(options or {})
    if lossless:
        codec, pix_fmt = "libx264rgb", pix_fmt or "rgb24"
        opts.setdefault("qp", "0")
    elif codec == "libx264":
        pix_fmt = pix_fmt or ("yuv420p" if (w % 2 == 0 and h % 2 == 0) else "yuv444p")
        if crf is not None:
            opts.setdefault("crf", str(crf))
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        with av.open(str(tmp), "w", format=_container_format(path)) as container:
            from fractions import Fraction  # noqa: PLC0415

            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = w, h
            if pix_fmt is not None:
                stream.pix_fmt = pix_fmt
            elif stream.codec_context.codec.video_formats:
                stream.pix_fmt = _pick_pix_fmt(stream.codec_context.codec)
            if gop is not None:
                stream.codec_context.gop_size = int(gop)
                if codec.startswith("libx264"):
                    opts.setdefault("keyint_min", str(int(gop)))
                    opts.setdefault("sc_threshold", "0")
            if codec.startswith("libx264"):
                opts.setdefault("threads", "1")
            stream.options = opts
            if pts is not None:
                stream.codec_context.time_base = Fraction(1, 1000)
                stream.time_base = Fraction(1, 1000)
            for i, image in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                if pts is not None:
                    vf.pts = int(pts[i])
                    vf.time_base = Fraction(1, 1000)
                for packet in stream.encode(vf):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _container_format(path: Path) -> str | None:
    return CONTAINER_FORMATS.get(path.suffix.lower())


def _pick_pix_fmt(codec) -> str:
    names = [f.name for f in codec.video_formats]
    for pref in ("yuv420p", "rgb24", "bgr0", "yuv444p"):
        if pref in names:
            return pref
    return names[0]


def write_audio_only(path: str | os.PathLike, seconds: float = 0.5, rate: int = 16000) -> Path:
    """Write a silent audio-only file (AAC, container from the extension). For tests of
    the "no video stream" failure."""
    av = _av()
    path = Path(path)
    n = max(1, int(seconds * rate / 1024))
    with av.open(str(path), "w", format=_container_format(path)) as container:
        stream = container.add_stream("aac", rate=rate)
        for i in range(n):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
