"""Dataset adapters: turn a dataset folder (or CSV) into a flat, labelled video index.

Layouts (``kind``; ``"auto"`` detects them in this order):

* ``ucf101`` — ``ucfTrainTestlist/`` (or the list files in the root) with ``classInd.txt``
  (``"1 ApplyEyeMakeup"``, 1-based), ``trainlist0N.txt`` (``"Class/v_Class_g08_c01.avi 1"``)
  and ``testlist0N.txt`` (``"Class/v_Class_g01_c01.avi"``), folds 1–3 (those present).
  Videos are listed relative to the root (or to ``UCF-101/`` / ``UCF101/`` inside it).
* ``hmdb51`` — ``testTrainMulti_7030_splits/<class>_test_split<N>.txt`` (or those files in
  the root), lines ``"video.avi 1|2|0"``: 1 = train, 2 = test, 0 = unused; videos at
  ``<root>/<class>/<video>``.
* ``kinetics`` — CSV files with the official columns ``label,youtube_id,time_start,
  time_end,split``; clips ``{youtube_id}_{start:06d}_{end:06d}.mp4`` are searched under
  ``<split>/<label>/``, ``<split>/``, ``<label>/`` and the root (any video extension).
  Splits: ``train`` → train, ``val``/``validate``/``validation`` → test, ``test`` →
  unused (no public labels). Listed clips that are not on disk are skipped with one
  warning line (downloads of Kinetics always miss some); none found is an error.
* ``csv`` — a plain ``path,label[,split]`` CSV (header optional; labels are class names,
  empty = unlabelled; without a split column the folder rule below applies). A listed
  path that does not exist is an error.
* ``folders`` / ``frames`` — one sub-folder per class holding video files (``folders``) or
  frame folders (``frames``: a video is a folder of ``%05d.jpg``). Fold 1 only, a
  deterministic stratified 80/20 split: within each class, videos sorted by the SHA-1 of
  their relative path; the first ``floor((n + 2) / 5)`` (= round(n/5), halves up) are
  test, the rest train.
* ``unlabelled`` — every video file and frame folder below the root (recursive), label
  -1, all train (fold 1).

A *video file* is any container FFmpeg demuxes (by extension, else by probing the
content, :mod:`cstp_cli.data.video.formats`). Every other file under the root is listed
in ``DatasetIndex.skipped`` with its reason (:mod:`cstp_cli.data.inventory`). The
list-file layouts (UCF-101, HMDB-51, Kinetics, CSV) are read by :mod:`cstp_cli.data.listed`.

A video name of the UCF-101 form ``v_<Class>_gXX_cYY`` gets ``group = "gXX"`` in every
layout (so validation splits can keep groups together, METHOD §6).
Errors are :class:`~cstp_cli.errors.DataError` with one line: a missing dataset folder,
a split file naming a missing video (file, line and video), a malformed list or CSV.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cstp_cli.errors import DataError
from cstp_cli.data.video import has_video_extension, is_frame_folder, why_not_video

KINDS = ("auto", "ucf101", "hmdb51", "kinetics", "csv", "folders", "frames", "unlabelled")
SPLITS = ("train", "test", "unused")

_GROUP = re.compile(r"^v_.+_(g\d+)_c\d+", re.IGNORECASE)


@dataclass
class VideoEntry:
    """One video. path: absolute; rel: path relative to the dataset root (POSIX);
    label: class index, -1 when unlabelled; group: UCF-101 group ``"gXX"`` or None;
    splits: fold → ``"train"`` | ``"test"`` | ``"unused"``."""

    path: Path
    rel: str
    label: int
    group: str | None
    splits: dict[int, str]


@dataclass
class DatasetIndex:
    """A dataset: its root, detected ``kind``, class names (index = label), videos sorted by
    ``rel``, the folds present, non-fatal ``warnings`` (e.g. skipped Kinetics clips) and
    ``skipped``: every other file under the root with the reason it is not a video of the
    dataset, ``(rel, reason)`` (:mod:`cstp_cli.data.inventory`)."""

    root: Path
    kind: str
    classes: list[str]
    videos: list[VideoEntry]
    folds: list[int]
    warnings: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.videos)

    def split(self, fold: int, which: str) -> list[int]:
        """Indices of the videos that are ``which`` (train/test/unused) in ``fold``."""
        if fold not in self.folds:
            raise DataError(f"{self.root}: no fold {fold} (folds: {', '.join(map(str, self.folds))})")
        return [i for i, v in enumerate(self.videos) if v.splits.get(fold) == which]


# --------------------------------------------------------------------------- entry point


def load_dataset(root: str | Path, kind: str = "auto") -> DatasetIndex:
    """Index the dataset at ``root`` (a folder, or a CSV file for ``kinetics``/``csv``).

    kind: one of :data:`KINDS`; ``"auto"`` detects the layout (module docstring).
    Raises DataError (one line) for a missing folder, a split file naming a missing video,
    a malformed list, or a dataset with no videos.
    """
    root = Path(root).expanduser()
    if kind not in KINDS:
        raise DataError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist; pass a dataset root, a video folder or a cache file")
    root = root.resolve()
    if kind == "auto":
        kind = detect_kind(root)
    from cstp_cli.data import listed

    adapter = {
        "ucf101": listed.load_ucf101,
        "hmdb51": listed.load_hmdb51,
        "kinetics": listed.load_kinetics,
        "csv": listed.load_csv,
        "folders": _load_class_folders,
        "frames": _load_class_folders,
        "unlabelled": _load_unlabelled,
    }[kind]
    index = adapter(root)
    index.kind = kind
    from cstp_cli.data.inventory import skipped_files

    index.skipped = skipped_files(index)
    if not index.videos:
        seen = f"; {len(index.skipped)} file(s) there, none a video (first: {index.skipped[0][0]}: {index.skipped[0][1]})" if index.skipped else ""
        raise DataError(
            f"{root}: no videos found ({kind} layout: video files of any container FFmpeg reads, or frame folders{seen})"
        )
    index.videos.sort(key=lambda v: v.rel)
    return index


def detect_kind(root: Path) -> str:
    """The layout of ``root`` (see the module docstring for the order of the checks)."""
    from cstp_cli.data import listed

    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DataError(f"{root} is a file but not a CSV; pass a dataset folder, a CSV or a cache file")
        return "kinetics" if listed.is_kinetics_csv(root) else "csv"
    if listed.ucf_list_dir(root) is not None:
        return "ucf101"
    if listed.hmdb_split_files(root):
        return "hmdb51"
    csvs = sorted(root.glob("*.csv"))
    if any(listed.is_kinetics_csv(c) for c in csvs):
        return "kinetics"
    if len(csvs) == 1 and listed.csv_header(csvs[0])[:1] == ["path"]:
        return "csv"
    subdirs = _subdirs(root)
    if subdirs and not _video_files(root) and all(_class_videos(d) for d in subdirs):
        if all(not is_frame_folder(d) for d in subdirs):
            return "frames" if all(is_frame_folder(v) for d in subdirs for v in _class_videos(d)) else "folders"
    return "unlabelled"


# --------------------------------------------------------------------------- helpers


def is_video_file(path: Path) -> bool:
    """A video: named like one (any container FFmpeg demuxes; a file, a dangling link or a
    directory with such an extension — the last two are kept so that decoding reports
    them as failures with a reason), or a regular file with an extension that says
    nothing (none, ``.dat``, unknown) whose content FFmpeg reads as a video (probed once,
    :func:`cstp_cli.data.video.why_not_video`). Hidden files are not videos."""
    if has_video_extension(path):
        return True
    if path.name.startswith(".") or not path.is_file():
        return False
    return why_not_video(path) is None


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and not is_video_file(p))


def _video_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_video_file(p) and not p.name.startswith("."))


def _class_videos(folder: Path) -> list[Path]:
    """Videos directly inside a class folder: video files and frame folders."""
    items = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return sorted(p for p in items if is_video_file(p) or is_frame_folder(p))


def _group(path: str) -> str | None:
    m = _GROUP.match(Path(path).name)
    return m.group(1).lower() if m else None


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _entry(path: Path, root: Path, label: int, splits: dict[int, str]) -> VideoEntry:
    rel = _rel(path, root)
    return VideoEntry(path=path, rel=rel, label=label, group=_group(rel), splits=splits)


def _resolve_video(bases: list[Path], rel: str) -> Path | None:
    """A listed video on disk: the file itself, or a frame folder named like it (without
    the extension)."""
    for base in bases:
        candidate = base / rel
        if os.path.lexists(candidate):  # undecodable entries fail later, with a reason
            return candidate
        folder = candidate.with_suffix("") if candidate.suffix else None
        if folder is not None and is_frame_folder(folder):
            return folder
    return None


def hash_split(rels_by_class: dict[int, list[str]]) -> dict[str, str]:
    """Deterministic stratified 80/20 split: rel → ``"train"``/``"test"``. Within each
    class, rels sorted by SHA-1; the first ``(n + 2) // 5`` are test."""
    out = {}
    for rels in rels_by_class.values():
        ordered = sorted(rels, key=lambda r: hashlib.sha1(r.encode("utf-8")).hexdigest())
        n_test = (len(ordered) + 2) // 5
        for i, rel in enumerate(ordered):
            out[rel] = "test" if i < n_test else "train"
    return out


def _read_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def _by_label(entries: list[VideoEntry]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for e in entries:
        if e.label >= 0:
            out.setdefault(e.label, []).append(e.rel)
    return out


# --------------------------------------------------------------------------- folders


def _load_class_folders(root: Path) -> DatasetIndex:
    if not root.is_dir():
        raise DataError(f"{root} is not a folder of class sub-folders")
    class_dirs = [d for d in _subdirs(root) if _class_videos(d)]
    classes = [d.name for d in class_dirs]
    entries = [_entry(v, root, label, {}) for label, d in enumerate(class_dirs) for v in _class_videos(d)]
    split = hash_split(_by_label(entries))
    for e in entries:
        e.splits[1] = split[e.rel]
    return DatasetIndex(root=root, kind="folders", classes=classes, videos=entries, folds=[1])


def _load_unlabelled(root: Path) -> DatasetIndex:
    if not root.is_dir():
        raise DataError(f"{root} is not a folder of videos")
    found = []
    stack = [root]
    while stack:
        folder = stack.pop()
        if is_frame_folder(folder) and folder != root:
            found.append(folder)
            continue
        for child in sorted(folder.iterdir()):
            if child.name.startswith("."):
                continue
            if is_video_file(child):
                found.append(child)
            elif child.is_dir():
                stack.append(child)
    if is_frame_folder(root):
        found.append(root)
    entries = [_entry(p, root, -1, {1: "train"}) for p in found]
    return DatasetIndex(root=root, kind="unlabelled", classes=[], videos=entries, folds=[1])
