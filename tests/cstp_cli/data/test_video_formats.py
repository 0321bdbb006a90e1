"""Which files are videos (cstp_cli/data/video/formats.py; issue 13 item 2): every container
FFmpeg demuxes, by extension or by probing; everything else is listed with a reason."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cstp_cli.data.datasets import load_dataset
from cstp_cli.data.video import decode, video_extensions, why_not_video, write_video

#: Containers the old allow-list dropped, with an encoder this PyAV has (no Theora here: Ogg holds VP8).
CONTAINERS = {
    ".ogv": "libvpx", ".ts": "mpeg2video", ".m2ts": "mpeg2video", ".mts": "libx264", ".3gp": "mpeg4", ".3g2": "mpeg4",
    ".mxf": "mpeg2video", ".y4m": "rawvideo", ".asf": "wmv2", ".vob": "mpeg2video", ".divx": "mpeg4", ".f4v": "libx264",
    ".m2v": "mpeg2video", ".nut": "ffv1",
}
FRAMES = np.random.default_rng(0).integers(0, 256, (3, 24, 32, 3), dtype=np.uint8)


def test_the_extensions_the_issue_names_are_videos_and_images_text_audio_are_not():
    exts = video_extensions()
    named = ".ogv .ogg .ts .m2ts .mts .3gp .3g2 .mxf .y4m .asf .vob .divx .f4v .m2v .nut .dv .avi .mp4 .mkv .webm .mov .wmv"
    assert [e for e in named.split() if e not in exts] == []
    assert [e for e in ".jpg .png .txt .srt .mp3 .wav .csv .json .h5 .dat".split() if e in exts] == []


def test_the_list_comes_from_ffmpeg_not_only_from_a_fixed_floor():
    from cstp_cli.data.video.formats import KNOWN_VIDEO_EXTENSIONS

    assert len(video_extensions() - KNOWN_VIDEO_EXTENSIONS) > 20  # e.g. .ivr .mjpeg .gxf ... from PyAV's demuxers


@pytest.fixture(scope="module")
def containers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("containers")
    for ext, codec in CONTAINERS.items():
        write_video(folder / f"clip{ext}", FRAMES, fps=25, codec=codec, pix_fmt="yuv420p" if codec != "rawvideo" else None)
    return folder


def test_a_folder_of_uncommon_containers_is_indexed_and_decodes(containers):
    index = load_dataset(containers)
    assert sorted(v.rel for v in index.videos) == sorted(f"clip{ext}" for ext in CONTAINERS)
    assert index.skipped == []
    assert {v.rel: len(decode(v.path, size=(16, 12))) for v in index.videos} == {f"clip{e}": 3 for e in CONTAINERS}


def test_a_video_with_an_unknown_or_no_extension_is_found_by_probing(containers, tmp_path):
    shutil.copy(containers / "clip.nut", tmp_path / "camera.take1")
    shutil.copy(containers / "clip.ts", tmp_path / "recording")
    (tmp_path / "notes.take1").write_text("not a video\n" * 10)
    index = load_dataset(tmp_path)
    assert [v.rel for v in index.videos] == ["camera.take1", "recording"]
    assert index.skipped == [("notes.take1", "not a video (FFmpeg cannot read it)")]


def test_every_other_file_is_listed_with_its_reason(containers, tmp_path):
    shutil.copy(containers / "clip.ts", tmp_path / "a.ts")
    (tmp_path / "readme.txt").write_text("hi")
    (tmp_path / "cover.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("x")
    assert load_dataset(tmp_path).skipped == [
        (".DS_Store", "hidden file"),
        (".git", "hidden folder"),
        ("cover.jpg", "not a video (still image file)"),
        ("readme.txt", "not a video (text file)"),
    ]


def test_a_still_image_with_an_unknown_extension_is_not_a_video(tmp_path):
    from PIL import Image

    Image.fromarray(FRAMES[0]).save(tmp_path / "thumb.img", format="PNG")
    assert why_not_video(tmp_path / "thumb.img") == "not a video (a still image)"


def test_ucf101_videos_not_in_the_split_lists_are_listed_but_its_lists_are_not(tiny_ucf_root):
    extra = tiny_ucf_root / "Jump" / "v_Jump_g99_c01.avi"
    shutil.copy(next((tiny_ucf_root / "Jump").glob("*.avi")), extra)
    skipped = load_dataset(tiny_ucf_root).skipped
    assert ("Jump/v_Jump_g99_c01.avi", "not in the split lists") in skipped
    assert not [p for p, _ in skipped if p.startswith("ucfTrainTestlist/")]
