"""Every file under a dataset root that is not one of its videos, with the reason.

``cstp cache build`` promises that nothing is skipped in silence: the files a layout does
not take as videos are listed in the build summary and stored in the cache
(``skipped/``), each with one of these reasons:

* ``not a video (<kind> file)`` / ``not a video (<what FFmpeg found>)`` — by extension,
  or by probing an unknown one (:func:`cstp_cli.data.video.why_not_video`);
* ``hidden file`` / ``hidden folder`` — names starting with ``.`` are never read;
* ``not in the split lists`` (UCF-101, HMDB-51), ``not listed in the CSV`` (Kinetics,
  CSV), ``not directly in a class folder`` (class-folder layouts) — a video the layout
  does not include.

The layout's own list files (``classInd.txt``, split lists, the CSVs read) are not listed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cstp_cli.data.video import why_not_video

_NOT_INCLUDED = {
    "ucf101": "not in the split lists",
    "hmdb51": "not in the split lists",
    "kinetics": "not listed in the CSV",
    "csv": "not listed in the CSV",
    "folders": "not directly in a class folder",
    "frames": "not directly in a class folder",
}


def _layout_files(index: Any) -> set[str]:
    """Absolute paths of the list files the layout was read from."""
    from cstp_cli.data import listed

    root, kind = Path(index.root), index.kind
    files: list[Path] = []
    if kind == "ucf101" and (lists := listed.ucf_list_dir(root)) is not None:
        files = [p for p in lists.glob("*.txt") if p.name == "classInd.txt" or p.name.startswith(("trainlist", "testlist"))]
    elif kind == "hmdb51":
        files = listed.hmdb_split_files(root)
    elif kind in ("kinetics", "csv"):
        files = list(root.glob("*.csv"))
    return {os.path.abspath(p) for p in files}


def skipped_files(index: Any) -> list[tuple[str, str]]:
    """``(path relative to the root, reason)`` for every file under ``index.root`` that is
    not one of ``index.videos`` (nor inside a frame folder that is), sorted by path.

    A hidden folder is one entry (its contents are not read). Symbolic links to folders
    are not followed."""
    root = Path(index.root)
    if not root.is_dir():
        return []
    videos = {os.path.abspath(v.path) for v in index.videos}
    meta = _layout_files(index)
    not_included = _NOT_INCLUDED.get(index.kind, "not part of the dataset layout")
    out: list[tuple[str, str]] = []
    for folder, dirs, files in os.walk(root):
        kept = []
        for name in sorted(dirs):
            path = os.path.join(folder, name)
            if path in videos:
                continue  # a frame folder that is a video
            if name.startswith("."):
                out.append((_rel(path, root), "hidden folder"))
                continue
            kept.append(name)
        dirs[:] = kept
        for name in files:
            path = os.path.join(folder, name)
            if path in videos or path in meta:
                continue
            out.append((_rel(path, root), _reason(Path(path), not_included)))
    return sorted(out)


def _reason(path: Path, not_included: str) -> str:
    if path.name.startswith("."):
        return "hidden file"
    if path.is_symlink() and not path.exists():
        return "dangling symbolic link"
    why = why_not_video(path)
    return not_included if why is None else why


def _rel(path: str, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


#: Categories of the files a build did not cache, in the order the summary prints them.
CATEGORIES = ("not a video", "undecodable", "timed out", "not included", "hidden")


def category(reason: str) -> str:
    """The summary category of a failure or skip ``reason`` (one of :data:`CATEGORIES`)."""
    if reason.startswith("timed out"):
        return "timed out"
    if reason.startswith(("not a video", "no video stream", "dangling symbolic link", "is a directory")):
        return "not a video"
    if reason.startswith("hidden"):
        return "hidden"
    if reason in _NOT_INCLUDED.values() or reason == "not part of the dataset layout":
        return "not included"
    return "undecodable"


def category_counts(reasons: list[str]) -> dict[str, int]:
    """``{category: count}`` of ``reasons``, categories in :data:`CATEGORIES` order, zeros left out."""
    counts = {c: 0 for c in CATEGORIES}
    for reason in reasons:
        counts[category(reason)] += 1
    return {c: n for c, n in counts.items() if n}
