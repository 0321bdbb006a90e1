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

A video name of the UCF-101 form ``v_<Class>_gXX_cYY`` gets ``group = "gXX"`` in every
layout (so validation splits can keep groups together, METHOD §6).
Errors are :class:`~cstp_cli.errors.DataError` with one line: a missing dataset folder,
a split file naming a missing video (file, line and video), a malformed list or CSV.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cstp_cli.errors import DataError
from cstp_cli.data.video import VIDEO_EXTENSIONS, is_frame_folder

KINDS = ("auto", "ucf101", "hmdb51", "kinetics", "csv", "folders", "frames", "unlabelled")
SPLITS = ("train", "test", "unused")

_GROUP = re.compile(r"^v_.+_(g\d+)_c\d+", re.IGNORECASE)
_HMDB_SPLIT = re.compile(r"^(?P<cls>.+)_test_split(?P<fold>\d+)\.txt$")
_KINETICS_COLUMNS = {"label", "youtube_id", "time_start", "time_end"}
_KINETICS_SPLITS = {"train": "train", "val": "test", "validate": "test", "validation": "test", "test": "unused"}
_CSV_SPLITS = {"train": "train", "test": "test", "unused": "unused", "val": "test", "validate": "test", "validation": "test"}


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
    ``rel``, the folds present, and non-fatal ``warnings`` (e.g. skipped Kinetics clips)."""

    root: Path
    kind: str
    classes: list[str]
    videos: list[VideoEntry]
    folds: list[int]
    warnings: list[str] = field(default_factory=list)

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
    adapter = {
        "ucf101": _load_ucf101,
        "hmdb51": _load_hmdb51,
        "kinetics": _load_kinetics,
        "csv": _load_csv,
        "folders": _load_class_folders,
        "frames": _load_class_folders,
        "unlabelled": _load_unlabelled,
    }[kind]
    index = adapter(root)
    index.kind = kind
    if not index.videos:
        raise DataError(f"{root}: no videos found ({kind} layout; extensions {' '.join(VIDEO_EXTENSIONS)} or frame folders)")
    index.videos.sort(key=lambda v: v.rel)
    return index


def detect_kind(root: Path) -> str:
    """The layout of ``root`` (see the module docstring for the order of the checks)."""
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DataError(f"{root} is a file but not a CSV; pass a dataset folder, a CSV or a cache file")
        return "kinetics" if _is_kinetics_csv(root) else "csv"
    if _ucf_list_dir(root) is not None:
        return "ucf101"
    if _hmdb_split_files(root):
        return "hmdb51"
    csvs = sorted(root.glob("*.csv"))
    if any(_is_kinetics_csv(c) for c in csvs):
        return "kinetics"
    if len(csvs) == 1 and _csv_header(csvs[0])[:1] == ["path"]:
        return "csv"
    subdirs = _subdirs(root)
    if subdirs and not _video_files(root) and all(_class_videos(d) for d in subdirs):
        if all(not is_frame_folder(d) for d in subdirs):
            return "frames" if all(is_frame_folder(v) for d in subdirs for v in _class_videos(d)) else "folders"
    return "unlabelled"


# --------------------------------------------------------------------------- helpers


def is_video_file(path: Path) -> bool:
    """Named like a video (a file, a dangling link or a directory with a video extension —
    the last two are kept so that decoding reports them as failures with a reason)."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


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


# --------------------------------------------------------------------------- UCF-101


def _ucf_list_dir(root: Path) -> Path | None:
    for candidate in (root / "ucfTrainTestlist", root):
        if (candidate / "classInd.txt").is_file():
            return candidate
    return None


def _load_ucf101(root: Path) -> DatasetIndex:
    lists = _ucf_list_dir(root)
    if lists is None:
        raise DataError(f"{root}: no ucfTrainTestlist/classInd.txt; not a UCF-101 layout")
    classes = _read_class_ind(lists / "classInd.txt")
    by_name = {c.lower(): i for i, c in enumerate(classes)}
    folds = sorted(
        int(m.group(1))
        for p in lists.glob("trainlist*.txt")
        if (m := re.fullmatch(r"trainlist0*(\d+)\.txt", p.name)) and (lists / f"testlist{m.group(1).zfill(2)}.txt").is_file()
    )
    if not folds:
        raise DataError(f"{lists}: no pair of trainlist0N.txt / testlist0N.txt; add the split lists")
    bases = [root] + [root / n for n in ("UCF-101", "UCF101") if (root / n).is_dir()]
    videos: dict[str, VideoEntry] = {}
    for fold in folds:
        for which in ("train", "test"):
            list_file = lists / f"{which}list{fold:02d}.txt"
            for lineno, line in _read_lines(list_file):
                rel, label_text = _ucf_line(line, bases)
                label = _ucf_label(rel, label_text.strip(), by_name, classes, list_file, lineno)
                entry = videos.get(rel)
                if entry is None:
                    path = _resolve_video(bases, rel)
                    if path is None:
                        raise DataError(f"{list_file}:{lineno}: video {rel} not found under {root}")
                    entry = VideoEntry(path=path, rel=rel, label=label, group=_group(rel), splits={})
                    videos[rel] = entry
                entry.splits[fold] = which
    for entry in videos.values():
        for fold in folds:
            entry.splits.setdefault(fold, "unused")
    return DatasetIndex(root=root, kind="ucf101", classes=classes, videos=list(videos.values()), folds=folds)


def _ucf_line(line: str, bases: list[Path]) -> tuple[str, str]:
    """Split a UCF-101 list line into (relative path, label text); names may hold spaces.

    Train lists end in a class index (``path label``), test lists hold the path alone: the
    last token is a label only when it is a number and the whole line is not itself a video.
    """
    whole = line.replace("\\", "/")
    head, sep, tail = whole.rpartition(" ")
    if sep and tail.isdigit() and _resolve_video(bases, whole) is None:
        return head.rstrip(), tail
    return whole, ""


def _read_class_ind(path: Path) -> list[str]:
    pairs = []
    for lineno, line in _read_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{path}:{lineno}: expected '<index> <ClassName>', got {line!r}")
        pairs.append((int(parts[0]), parts[1]))
    pairs.sort()
    if [i for i, _ in pairs] != list(range(1, len(pairs) + 1)):
        raise DataError(f"{path}: class indices must be 1..{len(pairs)} without gaps")
    return [name for _, name in pairs]


def _ucf_label(rel, label_text, by_name, classes, list_file, lineno) -> int:
    if label_text:
        if not label_text.isdigit() or not 1 <= int(label_text) <= len(classes):
            raise DataError(f"{list_file}:{lineno}: label {label_text!r} is not a class index 1..{len(classes)}")
        return int(label_text) - 1
    folder = rel.split("/")[0].lower() if "/" in rel else ""
    if folder in by_name:
        return by_name[folder]
    m = re.match(r"v_(.+?)_g\d+", Path(rel).name, re.IGNORECASE)
    if m and m.group(1).lower() in by_name:
        return by_name[m.group(1).lower()]
    raise DataError(f"{list_file}:{lineno}: cannot tell the class of {rel} (no class folder from classInd.txt)")


# --------------------------------------------------------------------------- HMDB-51


def _hmdb_split_files(root: Path) -> list[Path]:
    for folder in (root / "testTrainMulti_7030_splits", root):
        if folder.is_dir():
            files = sorted(p for p in folder.glob("*_test_split*.txt") if _HMDB_SPLIT.match(p.name))
            if files:
                return files
    return []


def _load_hmdb51(root: Path) -> DatasetIndex:
    files = _hmdb_split_files(root)
    if not files:
        raise DataError(f"{root}: no testTrainMulti_7030_splits/*_test_splitN.txt; not an HMDB-51 layout")
    parsed = [(_HMDB_SPLIT.match(p.name), p) for p in files]
    classes = sorted({m.group("cls") for m, _ in parsed})
    folds = sorted({int(m.group("fold")) for m, _ in parsed})
    codes = {"1": "train", "2": "test", "0": "unused"}
    videos: dict[str, VideoEntry] = {}
    for m, split_file in parsed:
        cls, fold = m.group("cls"), int(m.group("fold"))
        for lineno, line in _read_lines(split_file):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in codes:
                raise DataError(f"{split_file}:{lineno}: expected '<video> 0|1|2', got {line!r}")
            rel = f"{cls}/{parts[0]}"
            entry = videos.get(rel)
            if entry is None:
                path = _resolve_video([root], rel)
                if path is None:
                    raise DataError(f"{split_file}:{lineno}: video {parts[0]} not found in {root / cls}")
                entry = VideoEntry(path=path, rel=rel, label=classes.index(cls), group=_group(rel), splits={})
                videos[rel] = entry
            entry.splits[fold] = codes[parts[1]]
    for entry in videos.values():
        for fold in folds:
            entry.splits.setdefault(fold, "unused")
    return DatasetIndex(root=root, kind="hmdb51", classes=classes, videos=list(videos.values()), folds=folds)


# --------------------------------------------------------------------------- CSV layouts


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            row = next(csv.reader(fh), [])
    except OSError:
        return []
    return [c.strip().lower() for c in row]


def _is_kinetics_csv(path: Path) -> bool:
    return _KINETICS_COLUMNS <= set(_csv_header(path))


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [(i, [c.strip() for c in row]) for i, row in enumerate(csv.reader(fh), 1) if any(c.strip() for c in row)]
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    if not rows:
        raise DataError(f"{path}: empty CSV")
    return [c.lower() for c in rows[0][1]], rows


def _load_kinetics(root: Path) -> DatasetIndex:
    csvs = [root] if root.is_file() else [c for c in sorted(root.glob("*.csv")) if _is_kinetics_csv(c)]
    base = root.parent if root.is_file() else root
    if not csvs:
        raise DataError(f"{root}: no CSV with columns label,youtube_id,time_start,time_end[,split]")
    records = []
    for csv_path in csvs:
        header, rows = _read_csv(csv_path)
        if not _KINETICS_COLUMNS <= set(header):
            raise DataError(f"{csv_path}: missing Kinetics columns {sorted(_KINETICS_COLUMNS - set(header))}")
        col = {name: header.index(name) for name in header}
        default_split = _split_from_name(csv_path.stem)
        for lineno, row in rows[1:]:
            try:
                rec = {name: row[i] if i < len(row) else "" for name, i in col.items()}
                start, end = int(float(rec["time_start"])), int(float(rec["time_end"]))
            except (ValueError, KeyError):
                raise DataError(f"{csv_path}:{lineno}: malformed row {','.join(row)!r}") from None
            split = rec.get("split") or default_split
            records.append((csv_path, lineno, rec["label"], rec["youtube_id"], start, end, split))
    classes = sorted({r[2] for r in records if r[2]})
    lookup = _kinetics_lookup(base)
    videos, missing = [], 0
    for csv_path, lineno, label, yid, start, end, split in records:
        stem = f"{yid}_{start:06d}_{end:06d}"
        path = _find_kinetics_clip(lookup, stem, split, label)
        if path is None:
            missing += 1
            continue
        which = _KINETICS_SPLITS.get(split.lower(), "unused") if split else "train"
        videos.append(_entry(path, base, classes.index(label) if label else -1, {1: which}))
    warnings = []
    if missing:
        warnings.append(f"{missing} of {len(records)} clips listed in {', '.join(c.name for c in csvs)} not found under {base}; skipped")
    if not videos:
        raise DataError(f"{base}: none of the {len(records)} clips listed in {csvs[0].name} was found (names {{youtube_id}}_{{start:06d}}_{{end:06d}}.mp4)")
    return DatasetIndex(root=base, kind="kinetics", classes=classes, videos=videos, folds=[1], warnings=warnings)


def _split_from_name(stem: str) -> str:
    for token in ("train", "validate", "validation", "val", "test"):
        if token in stem.lower():
            return token
    return ""


def _kinetics_lookup(base: Path) -> dict[str, list[Path]]:
    """Clip stem → paths under ``base`` (any depth up to split/label/clip)."""
    lookup: dict[str, list[Path]] = {}
    for path in base.rglob("*"):
        if is_video_file(path):
            lookup.setdefault(path.stem, []).append(path)
    return lookup


def _find_kinetics_clip(lookup, stem, split, label) -> Path | None:
    paths = lookup.get(stem)
    if not paths:
        return None
    if len(paths) > 1:  # prefer <split>/<label>/, then <split>/
        for p in paths:
            if p.parent.name == label and p.parent.parent.name == split:
                return p
        for p in paths:
            if p.parent.name in (split, label):
                return p
    return sorted(paths)[0]


def _load_csv(root: Path) -> DatasetIndex:
    if root.is_file():
        csv_path, base = root, root.parent
    else:
        found = sorted(root.glob("*.csv"))
        if len(found) != 1:
            raise DataError(f"{root}: expected exactly one path,label[,split] CSV, found {len(found)}")
        csv_path, base = found[0], root
    header, rows = _read_csv(csv_path)
    body = rows[1:] if header[:1] == ["path"] else rows
    items = []
    for lineno, row in body:
        if len(row) < 1 or not row[0]:
            raise DataError(f"{csv_path}:{lineno}: expected path,label[,split]")
        path = Path(row[0]) if Path(row[0]).is_absolute() else base / row[0]
        if not os.path.lexists(path):
            raise DataError(f"{csv_path}:{lineno}: video {row[0]} not found")
        label = row[1] if len(row) > 1 else ""
        split = None
        if len(row) > 2 and row[2]:
            split = _CSV_SPLITS.get(row[2].lower())
            if split is None:
                raise DataError(f"{csv_path}:{lineno}: split {row[2]!r} is not train, test, val or unused")
        items.append((path, label, split))
    names = sorted({lab for _, lab, _ in items if lab})
    if names and all(n.lstrip("-").isdigit() for n in names):
        names = sorted(names, key=int)
    entries = [_entry(p, base, names.index(lab) if lab else -1, {}) for p, lab, _ in items]
    auto = hash_split(_by_label(entries))
    for entry, (_, _, split) in zip(entries, items):
        entry.splits[1] = split or ("train" if entry.label < 0 else auto[entry.rel])
    return DatasetIndex(root=base, kind="csv", classes=names, videos=entries, folds=[1])


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
