"""Dataset layouts described by list files: UCF-101 split lists, HMDB-51 split files,
Kinetics CSVs and plain ``path,label[,split]`` CSVs (see :mod:`cstp_cli.data.datasets`
for the rules of each; this module holds their readers)."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from cstp_cli.data.datasets import (
    DatasetIndex,
    VideoEntry,
    _by_label,
    _entry,
    _group,
    _read_lines,
    _resolve_video,
    hash_split,
    is_video_file,
)
from cstp_cli.errors import DataError

_HMDB_SPLIT = re.compile(r"^(?P<cls>.+)_test_split(?P<fold>\d+)\.txt$")
_KINETICS_COLUMNS = {"label", "youtube_id", "time_start", "time_end"}
_KINETICS_SPLITS = {"train": "train", "val": "test", "validate": "test", "validation": "test", "test": "unused"}
_CSV_SPLITS = {"train": "train", "test": "test", "unused": "unused", "val": "test", "validate": "test", "validation": "test"}


# --------------------------------------------------------------------------- UCF-101


def ucf_list_dir(root: Path) -> Path | None:
    for candidate in (root / "ucfTrainTestlist", root):
        if (candidate / "classInd.txt").is_file():
            return candidate
    return None


def load_ucf101(root: Path) -> DatasetIndex:
    lists = ucf_list_dir(root)
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


def hmdb_split_files(root: Path) -> list[Path]:
    for folder in (root / "testTrainMulti_7030_splits", root):
        if folder.is_dir():
            files = sorted(p for p in folder.glob("*_test_split*.txt") if _HMDB_SPLIT.match(p.name))
            if files:
                return files
    return []


def load_hmdb51(root: Path) -> DatasetIndex:
    files = hmdb_split_files(root)
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


def csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            row = next(csv.reader(fh), [])
    except OSError:
        return []
    return [c.strip().lower() for c in row]


def is_kinetics_csv(path: Path) -> bool:
    return _KINETICS_COLUMNS <= set(csv_header(path))


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [(i, [c.strip() for c in row]) for i, row in enumerate(csv.reader(fh), 1) if any(c.strip() for c in row)]
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    if not rows:
        raise DataError(f"{path}: empty CSV")
    return [c.lower() for c in rows[0][1]], rows


def load_kinetics(root: Path) -> DatasetIndex:
    csvs = [root] if root.is_file() else [c for c in sorted(root.glob("*.csv")) if is_kinetics_csv(c)]
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


def load_csv(root: Path) -> DatasetIndex:
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
