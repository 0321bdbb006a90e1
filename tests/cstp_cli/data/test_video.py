"""Decoding, span decoding and writing (cstp_cli/data/video.py; issue 2 items 4 and 8)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cstp_cli.errors import VideoDecodeError
from cstp_cli.data.video import DEFAULT_SIZE, decode, decode_span, is_frame_folder, resample_indices, write_video


def test_lossless_write_decodes_back_bit_exact(tiny_video_factory, tiny_frames):
    frames = tiny_frames(12, (32, 24), seed=3)
    path = tiny_video_factory("exact.mp4", frames=frames, lossless=True)
    decoded = decode(path, size=None)
    assert np.array_equal(decoded.frames, frames)


def test_lossy_write_is_close_but_not_exact(tiny_video_factory, tiny_frames):
    frames = tiny_frames(6, (32, 24))
    decoded = decode(tiny_video_factory("lossy.mp4", frames=frames), size=None)
    assert decoded.frames.shape == frames.shape
    assert np.abs(decoded.frames.astype(int) - frames).mean() < 20


def test_decode_resizes_to_default_cache_size(tiny_video_factory):
    decoded = decode(tiny_video_factory("v.mp4", frames=3))
    assert decoded.frames.shape == (3, DEFAULT_SIZE[1], DEFAULT_SIZE[0], 3)
    assert decoded.frames.dtype == np.uint8
    assert decoded.source_wh == (32, 24)
    assert decoded.fps == 25


def test_decode_resizes_to_requested_width_by_height(tiny_video_factory):
    assert decode(tiny_video_factory("v.mp4", frames=2), size=(20, 10)).frames.shape == (2, 10, 20, 3)


def test_resize_is_deterministic(tiny_video_factory):
    path = tiny_video_factory("v.mp4", frames=4)
    assert np.array_equal(decode(path, size=(45, 37)).frames, decode(path, size=(45, 37)).frames)


@pytest.mark.parametrize(("start", "stop"), [(0, 5), (7, 19), (11, 12), (25, 40), (30, 30)])
def test_decode_span_equals_decode_slice_on_lossless_file(tiny_video_factory, tiny_frames, start, stop):
    path = tiny_video_factory("gop.mp4", frames=tiny_frames(30, (32, 24), seed=1), lossless=True, gop=6)
    full = decode(path, size=(40, 30)).frames
    span = decode_span(path, start, stop, size=(40, 30))
    assert np.array_equal(span, full[start:stop])


@pytest.mark.parametrize("name", ["bframes.mp4", "bframes.avi", "bframes.mkv"])
def test_decode_span_matches_decode_on_lossy_h264_with_b_frames(tiny_video_factory, name):
    path = tiny_video_factory(name, frames=40, size=(32, 24), gop=8)
    full = decode(path, size=(16, 12)).frames
    for start, stop in ((0, 3), (9, 21), (30, 45), (33, 34)):
        assert np.array_equal(decode_span(path, start, stop, size=(16, 12)), full[start:stop])


def test_decode_span_without_threads_matches(tiny_video_factory, tiny_frames):
    frames = tiny_frames(20, (32, 24), seed=2)
    path = tiny_video_factory("gop.mkv", frames=frames, lossless=True, gop=4)
    assert np.array_equal(decode_span(path, 9, 15, size=None, threads=False), frames[9:15])


def test_decode_span_of_frame_folder(tmp_path, tiny_frames):
    from PIL import Image

    folder = tmp_path / "clip"
    folder.mkdir()
    for i, frame in enumerate(tiny_frames(5, (16, 12))):
        Image.fromarray(frame).save(folder / f"{i + 1:05d}.png")
    assert np.array_equal(decode_span(folder, 1, 4, size=None), decode(folder, size=None).frames[1:4])


def test_frame_folder_of_jpegs_decodes_in_numeric_order(tmp_path):
    from PIL import Image

    folder = tmp_path / "v_Run_g01_c01"
    folder.mkdir()
    for i in (1, 2, 10):  # 00010 must come after 00002
        Image.fromarray(np.full((12, 16, 3), 20 * i, np.uint8)).save(folder / f"{i:05d}.jpg", quality=100)
    assert is_frame_folder(folder)
    decoded = decode(folder, size=None)
    assert decoded.frames.shape == (3, 12, 16, 3)
    assert np.allclose(decoded.frames.reshape(3, -1).mean(1), [20, 40, 200], atol=2)


def test_frame_folder_with_a_broken_image_keeps_the_prefix_with_warning(tmp_path, tiny_frames):
    from PIL import Image

    folder = tmp_path / "clip"
    folder.mkdir()
    for i, frame in enumerate(tiny_frames(4, (16, 12))):
        Image.fromarray(frame).save(folder / f"{i + 1:05d}.png")
    (folder / "00003.png").write_bytes(b"not an image")
    decoded = decode(folder, size=None)
    assert len(decoded) == 2 and "00003.png" in decoded.warnings[0]


def test_fps_normalisation_halves_a_constant_rate_video(tiny_video_factory, tiny_frames):
    frames = tiny_frames(10, (32, 24))
    decoded = decode(tiny_video_factory("v.mp4", frames=frames, lossless=True), size=None, fps=12.5)
    assert decoded.fps == 12.5
    assert np.array_equal(decoded.frames, frames[::2])


def test_resample_indices_follow_timestamps():
    times = np.array([0.0, 0.02, 0.1, 0.12, 0.2, 0.22])  # variable spacing; lasts 0.24 s
    assert resample_indices(times, 50).tolist() == [0, 1, 1, 1, 1, 2, 3, 3, 3, 3, 4, 5]
    assert resample_indices(times, 25).tolist() == [0, 1, 1, 3, 3, 4]


# --- item 8: valid but awkward inputs decode -----------------------------------------


@pytest.mark.parametrize(
    ("name", "count", "source_wh"),
    [
        ("one_frame", 1, (32, 24)),
        ("five_frames", 5, (32, 24)),
        ("grayscale", 6, (32, 24)),
        ("tiny_8x8", 6, (8, 8)),
        ("extreme_aspect", 6, (160, 8)),
        ("odd_size", 6, (33, 17)),
        ("variable_fps", 6, (32, 24)),
        ("non_ascii", 6, (32, 24)),
    ],
)
def test_awkward_valid_video_decodes_every_frame(awkward_videos, name, count, source_wh):
    decoded = decode(awkward_videos[name], size=(24, 16))
    assert decoded.frames.shape == (count, 16, 24, 3)
    assert decoded.source_wh == source_wh
    assert decoded.warnings == []


def test_grayscale_video_decodes_to_equal_rgb_channels(awkward_videos):
    frames = decode(awkward_videos["grayscale"], size=None).frames
    assert np.array_equal(frames[..., 0], frames[..., 1]) and np.array_equal(frames[..., 1], frames[..., 2])


def test_odd_size_kept_when_size_is_none(awkward_videos):
    assert decode(awkward_videos["odd_size"], size=None).frames.shape == (6, 17, 33, 3)


def test_variable_frame_rate_is_normalised_by_timestamps(awkward_videos, tiny_frames):
    decoded = decode(awkward_videos["variable_fps"], size=None, fps=50)  # pts 0,20,100,120,200,220 ms
    ids = [int(np.argmax(f[:, :, 0].mean(0))) for f in decoded.frames]  # the bar's column = frame id
    assert ids == [0, 1, 1, 1, 1, 2, 3, 3, 3, 3, 4, 5]


def test_truncated_file_keeps_decodable_prefix_with_warning(awkward_videos):
    decoded = decode(awkward_videos["truncated_prefix"], size=None)
    assert 0 < len(decoded) < 40
    assert any("truncated" in w or "stopped" in w for w in decoded.warnings)


# --- item 8: undecodable inputs fail with a reason -----------------------------------


@pytest.mark.parametrize(
    "name",
    ["zero_byte", "text_as_avi", "random_bytes", "truncated_unopenable", "audio_only", "dangling_symlink", "directory"],
)
def test_undecodable_input_raises_with_file_and_reason(broken_videos, name):
    path, reason = broken_videos[name]
    with pytest.raises(VideoDecodeError) as info:
        decode(path)
    assert info.value.path == str(path)
    assert reason in info.value.reason
    assert "\n" not in str(info.value)


def test_decode_span_fails_like_decode(broken_videos):
    path, reason = broken_videos["text_as_avi"]
    with pytest.raises(VideoDecodeError, match=reason):
        decode_span(path, 0, 4)


def test_write_video_rejects_non_uint8_frames(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8, 3), np.float32))


def test_write_video_leaves_no_temporary_file(tiny_video_factory):
    path = tiny_video_factory("clean/v.mp4", frames=2)
    assert [p.name for p in path.parent.iterdir()] == ["v.mp4"]


def test_module_imports_without_pyav():
    code = "import sys; sys.modules['av'] = None; import cstp_cli.data.video; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
