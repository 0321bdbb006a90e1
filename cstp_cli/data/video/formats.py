"""Which files are videos: FFmpeg's container extensions, and content probing for the rest.

:func:`video_extensions` is generated from the FFmpeg that PyAV links: the extensions of
every demuxer, plus those of the muxer of the same name (FFmpeg registers ``.ts``, ``.mpg``,
``.asf``/``.wmv``, ``.mxf`` on the muxer only), plus :data:`KNOWN_VIDEO_EXTENSIONS` (so a
lean FFmpeg build still recognises the usual ones), minus :data:`NOT_VIDEO_EXTENSIONS`
(still images — frame folders hold those —, audio, subtitles, text and playlists) and
minus :data:`PROBED_EXTENSIONS` (names FFmpeg claims that usually hold something else).

A file whose extension is neither a video's nor obviously something else (no extension,
``.dat``, an unknown suffix) is opened by FFmpeg (:func:`probe_video`): it is a video when
FFmpeg finds a video stream that is not a still image. Only such files are probed, so
indexing a dataset of ``.avi`` files costs no decoder call.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

#: Video container extensions every FFmpeg build demuxes (a floor under the generated list).
KNOWN_VIDEO_EXTENSIONS = frozenset(
    ".avi .mp4 .m4v .mkv .mk3d .webm .mov .qt .mpg .mpeg .mpe .m1v .m2v .mpv .vob .evo .ts .m2t .m2ts .mts "
    ".tod .mod .ogv .ogg .ogm .3gp .3g2 .mxf .y4m .asf .wmv .divx .xvid .f4v .flv .nut .dv .dif .gxf .wtv "
    ".rm .rmvb .ivf .h264 .264 .h265 .265 .hevc .mjpeg .mjpg .amv .nsv .swf .roq .yuv4mpeg".split()
)

#: Extensions that are never taken as videos, each with what they are.
NOT_VIDEO_KINDS: dict[str, str] = {
    **dict.fromkeys(
        ".jpg .jpeg .png .bmp .gif .webp .tif .tiff .avif .heic .heif .jxl .j2k .jp2 .j2c .jls .jxs .pgm .ppm .pbm "
        ".pam .pfm .phm .pgmyuv .tga .exr .dpx .hdr .sgi .pcx .xbm .xwd .ras .sun .sunras .qoi .ico .psd .svg .wbmp "
        ".apng .mpo .ljpg .im1 .im8 .im24 .pix .vbn .xface .y".split(),
        "still image",
    ),
    **dict.fromkeys(
        ".mp3 .wav .flac .aac .m4a .m4b .mka .opus .oga .spx .wma .ac3 .eac3 .ec3 .dts .dtshd .amr .ape .au .aif "
        ".aiff .aifc .caf .mp2 .mpa .m2a .tta .wv .mlp .thd .ra .voc .w64 .gsm .mpc .tak .shn .qoa .sox .pcm .mid .midi".split(),
        "audio",
    ),
    **dict.fromkeys(".srt .vtt .webvtt .ass .ssa .sub .idx .sup .smi .sami .stl .lrc .ttml .scc .mcc .jss .pjs .mpl2 .aqt .rt".split(), "subtitles"),
    **dict.fromkeys(
        ".txt .md .rst .csv .tsv .json .jsonl .yaml .yml .toml .xml .html .htm .log .nfo .diz .ans .art .asc .ice .vt "
        ".ffmeta .m3u .m3u8 .pls .cue .py .sh .js".split(),
        "text",
    ),
    **dict.fromkeys(
        ".h5 .hdf5 .npz .npy .pt .pth .ckpt .onnx .pkl .pickle .zip .tar .gz .tgz .bz2 .xz .zst .7z .rar .pdf .doc .docx "
        ".lock .tmp .part .torrent .db .sqlite .parquet .arrow .lmdb".split(),
        "data",
    ),
}
NOT_VIDEO_EXTENSIONS = frozenset(NOT_VIDEO_KINDS)

#: Extensions FFmpeg claims that usually hold something else: decided by probing.
PROBED_EXTENSIONS = frozenset(".dat .bin .raw .v .yuv .rgb .cif .qcif .sw .ub .ul .al .uw .sb .sf .xl .bit .c2".split())

#: FFmpeg demuxers of still images (a file they open is not a video).
_IMAGE_FORMATS = ("image2", "_pipe", "gif", "apng", "webp")


def _ffmpeg_extensions() -> set[str]:
    """Extensions FFmpeg (through PyAV) registers for its demuxers and same-named muxers."""
    try:
        import av  # noqa: PLC0415 - cstp's video package owns av; imported lazily
    except ImportError:  # pragma: no cover - av is a dependency
        return set()
    out: set[str] = set()
    for name in av.formats_available:
        try:
            demuxer = av.format.ContainerFormat(name, "r")
        except (ValueError, av.error.FFmpegError):
            continue
        out |= set(demuxer.extensions)
        for part in name.split(","):
            try:
                out |= set(av.format.ContainerFormat(part, "w").extensions)
            except (ValueError, av.error.FFmpegError):
                pass
    return {"." + e.lower() for e in out if e}


@functools.lru_cache(maxsize=1)
def video_extensions() -> frozenset[str]:
    """Lower-case extensions (with the dot) of files taken as videos without probing."""
    return frozenset((KNOWN_VIDEO_EXTENSIONS | _ffmpeg_extensions()) - NOT_VIDEO_EXTENSIONS - PROBED_EXTENSIONS)


def not_video_kind(path: str | os.PathLike) -> str | None:
    """What a file obviously is when its extension says it is not a video
    (``"still image"``, ``"audio"``, ``"subtitles"``, ``"text"``, ``"data"``), else None."""
    return NOT_VIDEO_KINDS.get(Path(path).suffix.lower())


def has_video_extension(path: str | os.PathLike) -> bool:
    """Named like a video container (no probing)."""
    return Path(path).suffix.lower() in video_extensions()


def probe_video(path: str | os.PathLike) -> str | None:
    """Open ``path`` with FFmpeg: None when it holds a video stream that is not a still
    image, else why it is not a video (one short phrase)."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    try:
        import av  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        return "PyAV is not installed"
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            fmt = container.format.name
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams}) or ["none"]
                return f"FFmpeg finds no video stream ({', '.join(kinds)})"
            if any(tag in fmt for tag in _IMAGE_FORMATS):
                return "a still image"
    except Exception:  # noqa: BLE001 - any FFmpeg failure means: not a video it can read
        return "FFmpeg cannot read it"
    return None


@functools.lru_cache(maxsize=65536)
def _probe_cached(path: str, size: int, mtime_ns: int) -> str | None:
    return probe_video(path)


def why_not_video(path: str | os.PathLike) -> str | None:
    """None when the file ``path`` is a video (by extension, else by probing its content),
    else the reason it is not, e.g. ``"not a video (text file)"``."""
    p = Path(path)
    if has_video_extension(p):
        return None
    kind = not_video_kind(p)
    if kind is not None:
        return f"not a video ({kind} file)" if kind != "subtitles" else "not a video (subtitles)"
    try:
        st = p.stat()
    except OSError:
        return "not a video (cannot be read)"
    reason = _probe_cached(str(p), st.st_size, st.st_mtime_ns)
    return None if reason is None else f"not a video ({reason})"
