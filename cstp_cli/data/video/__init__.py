"""Videos through PyAV: the only package of cstp that imports ``av`` (lazily, so importing
it works without PyAV installed).

* :mod:`.decode` — whole videos and frame spans to RGB ``uint8 [N, H, W, 3]`` resized on
  decode (:func:`decode`), frame folders, frame-rate resampling; :mod:`.spans` — a span
  of frames without decoding the whole video (:func:`decode_span`).
* :mod:`.formats` — which files are videos: every container FFmpeg demuxes, by
  extension, and by probing the content of files with an unknown extension.
* :mod:`.write` — encoding frames to a video file (tests, synthetic data, benchmarks).
"""

from cstp_cli.data.video.decode import (
    DEFAULT_SIZE,
    FRAME_FOLDER_FPS,
    INTERPOLATION,
    Decoded,
    decode,
    frame_files,
    is_frame_folder,
    resample_indices,
)
from cstp_cli.data.video.spans import decode_span
from cstp_cli.data.video.formats import (
    KNOWN_VIDEO_EXTENSIONS,
    NOT_VIDEO_EXTENSIONS,
    has_video_extension,
    probe_video,
    video_extensions,
    why_not_video,
)
from cstp_cli.data.video.write import CONTAINER_FORMATS, write_audio_only, write_video

__all__ = [
    "DEFAULT_SIZE",
    "FRAME_FOLDER_FPS",
    "INTERPOLATION",
    "Decoded",
    "decode",
    "decode_span",
    "frame_files",
    "is_frame_folder",
    "resample_indices",
    "KNOWN_VIDEO_EXTENSIONS",
    "NOT_VIDEO_EXTENSIONS",
    "has_video_extension",
    "probe_video",
    "video_extensions",
    "why_not_video",
    "CONTAINER_FORMATS",
    "write_audio_only",
    "write_video",
]
