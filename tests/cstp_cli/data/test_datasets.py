"""Dataset adapters (cstp_cli/data/datasets.py; issue 2 item 5 and item 8's command-level data errors).

The adapters only index files, so most layouts here use empty placeholder files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cstp_cli.data.datasets import hash_split, load_dataset
from cstp_cli.errors import DataError


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def frame_folder(folder: Path, n: int = 3) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(1, n + 1):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / f"{i:05d}.jpg")


# --- UCF-101 -------------------------------------------------------------------------


def test_ucf101_layout_is_detected_with_three_folds(tiny_ucf_root):
    index = load_dataset(tiny_ucf_root)
    assert index.kind == "ucf101"
    assert index.classes == ["Jump", "Run", "Wave"]
    assert index.folds == [1, 2, 3]
    assert len(index) == 6


def test_ucf101_labels_groups_and_splits(tiny_ucf_root):
    index = load_dataset(tiny_ucf_root)
    video = next(v for v in index.videos if v.rel == "Run/v_Run_g02_c01.avi")
    assert video.label == 1
    assert video.group == "g02"
    assert video.splits == {1: "train", 2: "test", 3: "train"}
    assert video.path == tiny_ucf_root.resolve() / video.rel and video.path.is_file()


def test_ucf101_split_indices_partition_each_fold(tiny_ucf_root):
    index = load_dataset(tiny_ucf_root)
    for fold in index.folds:
        train, test = index.split(fold, "train"), index.split(fold, "test")
        assert len(train) == 3 and len(test) == 3 and not set(train) & set(test)


def test_ucf101_split_file_naming_missing_video_is_one_line_error(tiny_ucf_root):
    (tiny_ucf_root / "Jump" / "v_Jump_g01_c01.avi").unlink()
    with pytest.raises(DataError) as info:
        load_dataset(tiny_ucf_root)
    message = str(info.value)
    assert "testlist01.txt:1" in message and "v_Jump_g01_c01.avi" in message and "\n" not in message


def test_ucf101_listed_video_may_be_a_frame_folder(tiny_ucf_root):
    (tiny_ucf_root / "Wave" / "v_Wave_g01_c01.avi").unlink()
    frame_folder(tiny_ucf_root / "Wave" / "v_Wave_g01_c01")
    video = next(v for v in load_dataset(tiny_ucf_root).videos if "Wave_g01" in v.rel)
    assert video.path.name == "v_Wave_g01_c01" and video.path.is_dir()


def test_ucf101_bad_label_names_file_and_line(tiny_ucf_root):
    (tiny_ucf_root / "ucfTrainTestlist" / "trainlist02.txt").write_text("Jump/v_Jump_g01_c01.avi 7\n")
    with pytest.raises(DataError, match=r"trainlist02.txt:1: label '7'"):
        load_dataset(tiny_ucf_root)


# --- HMDB-51 -------------------------------------------------------------------------


def make_hmdb(root: Path) -> Path:
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for cls in ("brush_hair", "clap"):
        touch(root, *(f"{cls}/{cls}_{i}.avi" for i in range(3)))
        for fold in (1, 2, 3):
            codes = {1: "1 2 0", 2: "2 1 1", 3: "0 1 2"}[fold].split()
            (splits / f"{cls}_test_split{fold}.txt").write_text(
                "".join(f"{cls}_{i}.avi {c} \n" for i, c in enumerate(codes))
            )
    return root


def test_hmdb51_codes_map_to_train_test_unused(tmp_path):
    index = load_dataset(make_hmdb(tmp_path / "hmdb"))
    assert index.kind == "hmdb51"
    assert index.classes == ["brush_hair", "clap"] and index.folds == [1, 2, 3]
    video = next(v for v in index.videos if v.rel == "clap/clap_0.avi")
    assert video.label == 1
    assert video.splits == {1: "train", 2: "test", 3: "unused"}


def test_hmdb51_split_file_naming_missing_video_is_an_error(tmp_path):
    root = make_hmdb(tmp_path / "hmdb")
    (root / "clap" / "clap_2.avi").unlink()
    with pytest.raises(DataError, match=r"clap_test_split1.txt:3: video clap_2.avi not found"):
        load_dataset(root)


# --- Kinetics and plain CSV ----------------------------------------------------------


KINETICS_CSV = """label,youtube_id,time_start,time_end,split
abseiling,aaa,10,20,train
abseiling,bbb,0,10,train
zumba,ccc,5,15,val
zumba,ddd,30,40,train
,eee,1,11,test
"""


def test_kinetics_csv_finds_clips_in_split_label_folders_and_flat(tmp_path):
    root = tmp_path / "k400"
    touch(root, "train/abseiling/aaa_000010_000020.mp4", "bbb_000000_000010.mp4", "val/zumba/ccc_000005_000015.mkv")
    touch(root, "test/eee_000001_000011.mp4")
    (root / "k400.csv").write_text(KINETICS_CSV)
    index = load_dataset(root)
    assert index.kind == "kinetics" and index.classes == ["abseiling", "zumba"]
    by_id = {v.path.name[:3]: v for v in index.videos}
    assert sorted(by_id) == ["aaa", "bbb", "ccc", "eee"]
    assert by_id["ccc"].label == 1 and by_id["ccc"].splits == {1: "test"}
    assert by_id["aaa"].splits == {1: "train"} and by_id["eee"].label == -1 and by_id["eee"].splits == {1: "unused"}
    assert any("1 of 5 clips" in w for w in index.warnings)  # ddd was never downloaded


def test_kinetics_csv_file_may_be_given_directly(tmp_path):
    touch(tmp_path, "aaa_000010_000020.mp4")
    (tmp_path / "list.csv").write_text(KINETICS_CSV)
    index = load_dataset(tmp_path / "list.csv")
    assert index.kind == "kinetics" and [v.rel for v in index.videos] == ["aaa_000010_000020.mp4"]


def test_kinetics_with_no_clip_on_disk_is_an_error(tmp_path):
    (tmp_path / "k.csv").write_text(KINETICS_CSV)
    with pytest.raises(DataError, match="none of the 5 clips"):
        load_dataset(tmp_path)


def test_plain_csv_path_label_split(tmp_path):
    touch(tmp_path, "a/x.mp4", "b/y.mp4", "z.webm")
    (tmp_path / "list.csv").write_text("path,label,split\na/x.mp4,cat,train\nb/y.mp4,dog,test\nz.webm,,unused\n")
    index = load_dataset(tmp_path)
    assert index.kind == "csv" and index.classes == ["cat", "dog"]
    assert [(v.rel, v.label, v.splits[1]) for v in index.videos] == [
        ("a/x.mp4", 0, "train"),
        ("b/y.mp4", 1, "test"),
        ("z.webm", -1, "unused"),
    ]


def test_plain_csv_missing_path_names_line(tmp_path):
    touch(tmp_path, "a.mp4")
    (tmp_path / "l.csv").write_text("path,label\na.mp4,x\nmissing.mp4,y\n")
    with pytest.raises(DataError, match=r"l.csv:3: video missing.mp4 not found"):
        load_dataset(tmp_path / "l.csv")


# --- folders, frame folders, unlabelled ----------------------------------------------


def test_class_folders_get_a_stratified_deterministic_80_20_split(tmp_path):
    touch(tmp_path, *(f"{c}/clip{i}.mp4" for c in ("alpha", "beta") for i in range(10)), "alpha/notes.txt")
    index = load_dataset(tmp_path)
    assert index.kind == "folders" and index.classes == ["alpha", "beta"] and len(index) == 20
    for label in (0, 1):
        splits = [v.splits[1] for v in index.videos if v.label == label]
        assert splits.count("test") == 2 and splits.count("train") == 8
    assert [v.splits for v in load_dataset(tmp_path).videos] == [v.splits for v in index.videos]


def test_hash_split_takes_round_n_over_5_per_class():
    split = hash_split({0: [f"a{i}" for i in range(7)], 1: ["b0"], 2: [f"c{i}" for i in range(3)]})
    counts = {c: sum(split[r] == "test" for r in split if r.startswith(c)) for c in "abc"}
    assert counts == {"a": 1, "b": 0, "c": 1}


def test_class_folders_of_frame_folders(tmp_path):
    for cls in ("up", "down"):
        frame_folder(tmp_path / cls / "v1")
        frame_folder(tmp_path / cls / "v2")
    index = load_dataset(tmp_path)
    assert index.kind == "frames" and index.classes == ["down", "up"]
    assert all(v.path.is_dir() for v in index.videos) and len(index) == 4


def test_unlabelled_folder_is_recursive_and_all_train(tmp_path):
    touch(tmp_path, "a.mp4", "deep/er/b.MKV", "deep/c.txt")
    frame_folder(tmp_path / "deep" / "frames_clip")
    index = load_dataset(tmp_path)
    assert index.kind == "unlabelled" and index.classes == []
    assert [v.rel for v in index.videos] == ["a.mp4", "deep/er/b.MKV", "deep/frames_clip"]
    assert all(v.label == -1 and v.splits == {1: "train"} for v in index.videos)


def test_undecodable_looking_entries_are_indexed_for_the_cache_to_report(tmp_path):
    touch(tmp_path, "ok.mp4")
    (tmp_path / "dir.avi").mkdir()
    os.symlink(tmp_path / "nowhere.mp4", tmp_path / "dangling.mp4")
    assert [v.rel for v in load_dataset(tmp_path).videos] == ["dangling.mp4", "dir.avi", "ok.mp4"]


def test_kind_forces_a_layout(tiny_ucf_root):
    index = load_dataset(tiny_ucf_root, kind="folders")
    assert index.kind == "folders" and index.folds == [1] and index.classes == ["Jump", "Run", "Wave"]


def test_ucf_group_is_parsed_in_any_layout(tmp_path):
    touch(tmp_path, "v_Run_g07_c03.mp4")
    assert load_dataset(tmp_path).videos[0].group == "g07"


# --- errors --------------------------------------------------------------------------


def test_missing_dataset_folder_is_one_line_error(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path / "nope")
    assert "does not exist" in str(info.value) and "\n" not in str(info.value)


def test_folder_without_videos_is_an_error(tmp_path):
    touch(tmp_path, "readme.txt")
    with pytest.raises(DataError, match="no videos found"):
        load_dataset(tmp_path)


def test_unknown_kind_is_an_error(tmp_path):
    with pytest.raises(DataError, match="unknown dataset kind"):
        load_dataset(tmp_path, kind="youtube8m")


def test_unknown_fold_is_an_error(tiny_ucf_root):
    with pytest.raises(DataError, match="no fold 4"):
        load_dataset(tiny_ucf_root).split(4, "train")


def test_ucf101_list_names_may_contain_spaces(tmp_path):
    lists = tmp_path / "ucfTrainTestlist"
    touch(tmp_path, "Run/v_Run fast_g01_c01.avi", "Run/v_Run fast_g02_c01.avi")
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 Run\n")
    (lists / "trainlist01.txt").write_text("Run/v_Run fast_g01_c01.avi 1\n")
    (lists / "testlist01.txt").write_text("Run/v_Run fast_g02_c01.avi\n")
    index = load_dataset(tmp_path)
    by_rel = {v.rel: v for v in index.videos}
    assert by_rel["Run/v_Run fast_g01_c01.avi"].splits[1] == "train"
    assert by_rel["Run/v_Run fast_g02_c01.avi"].splits[1] == "test"
    assert {v.label for v in index.videos} == {0}
