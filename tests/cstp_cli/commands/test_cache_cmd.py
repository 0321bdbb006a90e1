"""``cstp cache build/info/verify`` end to end, with awkward and broken inputs (issue 2
items 7 and 8): valid but awkward videos are cached, undecodable ones fail with a reason
and the build goes on; command-level failures print one line and exit 1."""

from __future__ import annotations

import os
import shutil

import h5py
import pytest

from cstp_cli.data.cache import CacheReader
from cstp_cli.cli import main

def run(argv, capsys):
    """Run ``cstp ARGV`` in this process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.fixture
def ucf_with_bad_inputs(tiny_ucf_root, awkward_videos, broken_videos):
    """The tiny UCF-101 layout plus every awkward and broken input of issue 2 item 8,
    listed as class ``Jump`` videos in ``trainlist01.txt`` (so unused in folds 2 and 3).
    UCF-101 lists separate fields by spaces, so spaces in names become ``_`` here (names
    with spaces are built from class folders below)."""
    lines = []
    for name, path in list(awkward_videos.items()) + [(n, p) for n, (p, _) in broken_videos.items()]:
        target = tiny_ucf_root / "Jump" / path.name.replace(" ", "_")
        if path.is_symlink():
            os.symlink(os.readlink(path), target)
        elif path.is_dir():
            target.mkdir()
        else:
            shutil.copyfile(path, target)
        lines.append(f"Jump/{target.name} 1\n")
    with open(tiny_ucf_root / "ucfTrainTestlist" / "trainlist01.txt", "a", encoding="utf-8") as fh:
        fh.writelines(lines)
    return tiny_ucf_root


def test_build_of_a_ucf_layout_caches_awkward_videos_and_lists_broken_ones(
    ucf_with_bad_inputs, awkward_videos, broken_videos, tmp_path, capsys
):
    out = tmp_path / "ucf.h5"
    argv = ["cache", "build", str(ucf_with_bad_inputs), "-o", str(out), "--size", "20x12", "--workers", "2", "-q"]
    code, stdout, stderr = run(argv, capsys)
    assert code == 0, stderr
    r = CacheReader(out)
    assert r.num_videos == 6 + len(awkward_videos) and r.classes == ["Jump", "Run", "Wave"]
    names = {name: path.name.replace(" ", "_") for name, path in awkward_videos.items()}
    for name, file in names.items():
        assert f"Jump/{file}" in r.paths, name
    truncated = r.paths.index("Jump/truncated.mkv")
    assert 0 < r.num_frames[truncated] < 40 and "warning: Jump/truncated.mkv" in stderr
    assert r.num_frames[r.paths.index("Jump/one.mp4")] == 1
    reasons = dict(r.failures)
    assert len(reasons) == len(broken_videos)
    for name, (path, word) in broken_videos.items():
        assert word in reasons[f"Jump/{path.name}"], name
        assert f"Jump/{path.name}: " in stdout, name  # listed at the end
    awkward = [r.paths.index(f"Jump/{file}") for file in names.values()]
    assert set(awkward) <= set(r.split(1, "train").tolist()) and set(awkward) <= set(r.split(2, "unused").tolist())
    assert r.groups[r.paths.index("Run/v_Run_g02_c01.avi")] == "g02"
    video = r.paths.index("Jump/vidéo_été_日本_clip.mp4")
    assert r.read(video, [5, 0]).shape == (2, 12, 20, 3)


def test_build_keeps_non_ascii_names_with_spaces(awkward_videos, tmp_path, capsys):
    root = tmp_path / "folders"
    (root / "clase ñ").mkdir(parents=True)
    shutil.copyfile(awkward_videos["non_ascii"], root / "clase ñ" / awkward_videos["non_ascii"].name)
    out = tmp_path / "names.h5"
    assert run(["cache", "build", str(root), "-o", str(out), "--size", "8x8", "--workers", "0", "-q"], capsys)[0] == 0
    r = CacheReader(out)
    assert r.paths == ["clase ñ/vidéo été 日本 clip.mp4"] and r.classes == ["clase ñ"] and r.num_frames[0] == 6


def test_info_and_verify_of_a_built_cache(tiny_ucf_root, tmp_path, capsys):
    out = tmp_path / "c.h5"
    assert run(["cache", "build", str(tiny_ucf_root), "-o", str(out), "--size", "8x8", "--workers", "0", "-q"], capsys)[0] == 0
    code, stdout, _ = run(["cache", "info", str(out)], capsys)
    assert code == 0 and "format       version 1" in stdout and "frame size   8x8" in stdout
    assert "fold 2       train 3, test 3, unused 0" in stdout
    code, stdout, _ = run(["cache", "verify", str(out)], capsys)
    assert code == 0 and stdout.startswith("ok:")


def test_verify_exits_1_on_a_damaged_cache(tiny_ucf_root, tmp_path, capsys):
    out = tmp_path / "c.h5"
    run(["cache", "build", str(tiny_ucf_root), "-o", str(out), "--size", "8x8", "--workers", "0", "-q"], capsys)
    with h5py.File(out, "r+") as f:
        f["videos/offsets"][1] = 0
    code, stdout, stderr = run(["cache", "verify", str(out)], capsys)
    assert code == 1 and "problem: videos/offsets not strictly increasing" in stdout
    assert stderr.count("\n") == 1 and stderr.startswith("error:")


def test_missing_dataset_folder_is_one_line_and_exit_1(tmp_path, capsys):
    code, _, stderr = run(["cache", "build", str(tmp_path / "nope"), "-o", str(tmp_path / "x.h5")], capsys)
    assert code == 1 and stderr.count("\n") == 1 and "does not exist" in stderr


def test_output_under_a_file_is_one_usage_line_before_any_decoding(tiny_ucf_root, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, stderr = run(["cache", "build", str(tiny_ucf_root), "-o", str(blocker / "sub" / "x.h5"), "-q"], capsys)
    assert code == 2 and stderr.count("\n") == 1 and "cannot write to the folder" in stderr and "-o" in stderr


def test_output_that_is_a_folder_is_one_usage_line_and_leaves_no_lock(tiny_ucf_root, tmp_path, capsys):
    folder = tmp_path / "out.h5"
    folder.mkdir()
    code, _, stderr = run(["cache", "build", str(tiny_ucf_root), "-o", str(folder), "-q"], capsys)
    assert code == 2 and stderr.count("\n") == 1 and "is a folder" in stderr
    assert not list(tmp_path.glob("*.lock")) and list(folder.iterdir()) == []


def test_unwritable_output_folder_is_found_by_a_real_write_test(tiny_ucf_root, tmp_path, capsys, monkeypatch):
    from cstp_cli.core import fsutil

    def read_only(folder):  # what a read-only mount does even for root, for whom os.access says yes
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(fsutil, "_probe_write", read_only)
    code, _, stderr = run(["cache", "build", str(tiny_ucf_root), "-o", str(tmp_path / "x.h5"), "-q"], capsys)
    assert code == 2 and stderr.count("\n") == 1 and "Read-only file system" in stderr
    assert not (tmp_path / "x.h5").exists() and not list(tmp_path.glob("x.h5*"))


def test_build_where_nothing_decodes_lists_failures_and_exits_1(broken_videos, tmp_path, capsys):
    out = tmp_path / "bad.h5"
    folder = broken_videos["zero_byte"][0].parent
    code, stdout, stderr = run(["cache", "build", str(folder), "-o", str(out), "--workers", "0", "-q"], capsys)
    assert code == 1 and not out.exists()
    assert "zero.mp4: empty file" in stdout and "notes.avi: not a video" in stdout and stderr.count("\n") == 1 and "no cache was written" in stderr


def test_bad_size_is_a_usage_error(tmp_path, capsys):
    code, _, stderr = run(["cache", "build", str(tmp_path), "--size", "171by128"], capsys)
    assert code == 2 and "WIDTHxHEIGHT" in stderr


def test_a_cache_file_given_as_dataset_is_refused(tmp_path, capsys):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w"):
        pass
    code, _, stderr = run(["cache", "build", str(path)], capsys)
    assert code == 1 and "already a cache file" in stderr


def test_info_of_a_missing_file_is_one_line_and_exit_1(tmp_path, capsys):
    code, _, stderr = run(["cache", "info", str(tmp_path / "none.h5")], capsys)
    assert code == 1 and stderr.count("\n") == 1 and "does not exist" in stderr


def test_split_file_naming_a_missing_video_is_one_line_and_exit_1(tiny_ucf_root, tmp_path, capsys):
    with open(tiny_ucf_root / "ucfTrainTestlist" / "trainlist01.txt", "a") as fh:
        fh.write("Jump/v_Jump_g09_c01.avi 1\n")
    code, _, stderr = run(["cache", "build", str(tiny_ucf_root), "-o", str(tmp_path / "x.h5"), "-q"], capsys)
    assert code == 1 and stderr.count("\n") == 1 and "v_Jump_g09_c01.avi not found" in stderr
    assert not (tmp_path / "x.h5").exists()


def test_ctrl_c_says_a_rerun_resumes_and_exits_130(tiny_ucf_root, tmp_path, capsys, monkeypatch):
    from cstp_cli.data import cache

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "build_cache", interrupted)
    code, _, stderr = run(["cache", "build", str(tiny_ucf_root), "-o", str(tmp_path / "x.h5"), "-q"], capsys)
    assert code == 130 and stderr.count("\n") == 1 and "run the same command again to resume" in stderr


def test_summary_counts_and_lists_every_file_that_was_not_cached(tiny_video_factory, tmp_path, capsys):
    tiny_video_factory("data/ok.ts", frames=3, codec="mpeg2video", pix_fmt="yuv420p")
    data = tmp_path / "data"
    (data / "readme.txt").write_text("about this data")
    (data / "broken.avi").write_text("not a video at all\n" * 10)
    (data / ".DS_Store").write_bytes(b"\0")
    out = tmp_path / "c.h5"
    code, stdout, _ = run(["cache", "build", str(data), "-o", str(out), "--workers", "0", "-q"], capsys)
    assert code == 0, stdout
    assert "broken.avi: not a video FFmpeg can read" in stdout
    assert "readme.txt: not a video (text file)" in stdout and ".DS_Store: hidden file" in stdout
    assert "cached 1 video(s), 3 not cached: 2 not a video, 1 hidden," in stdout
    code, info, _ = run(["cache", "info", str(out)], capsys)
    assert "not videos   2 other file(s)" in info and "readme.txt: not a video (text file)" in info


def test_undecodable_and_timed_out_are_counted_apart():
    from cstp_cli.data.inventory import category_counts

    reasons = ["timed out after 2 s (decoder hung); raise --timeout if the file is just long", "no decodable video frame (x)",
               "decoder process crashed (killed by signal 11)", "no video stream (streams: audio)", "not in the split lists"]
    assert category_counts(reasons) == {"not a video": 1, "undecodable": 2, "timed out": 1, "not included": 1}
