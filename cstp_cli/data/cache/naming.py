"""Names of caches: the build key of a dataset and the keyed file name in the cache folder.

No h5py here: :mod:`cstp_cli.data.resolve` (what DATA means) and the build both name a
dataset's cache through this module, so the naming lives in one place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from cstp_cli.core.paths import cache_dir
from cstp_cli.data.cache.layout import DEFAULT_SIZE, FORMAT_VERSION, JPEG_FORMAT_VERSION

__all__ = ["index_key", "cache_name", "default_cache_path"]


def index_key(index: Any, size: tuple[int, int], fps: float | None, codec: str = "raw") -> str:
    """Hash of what a build depends on: the videos (path, size, mtime, label, splits),
    the build parameters (``codec`` spec, e.g. ``jpeg:90``) and the format version (resume
    and reuse check it). A raw build hashes exactly as before codecs existed."""
    h = hashlib.sha1()
    head: list[Any] = [FORMAT_VERSION, list(size), fps, str(Path(index.root).resolve())]
    if codec != "raw":
        head += [JPEG_FORMAT_VERSION, codec]
    h.update(json.dumps(head).encode())
    for v in index.videos:
        try:
            st = os.stat(v.path)
            stat = [st.st_size, st.st_mtime_ns]
        except OSError:
            stat = [-1, -1]
        splits = sorted((int(k), str(s)) for k, s in (v.splits or {}).items())
        label = -1 if v.label is None else int(v.label)
        h.update(json.dumps([str(v.rel), stat, label, str(v.group), splits]).encode("utf-8"))
    return h.hexdigest()


def cache_name(index: Any, size: tuple[int, int] = DEFAULT_SIZE, fps: float | None = None, codec: str = "raw") -> str:
    """File name of a dataset's cache: ``<rootname>-<hash12>-<W>x<H>[-<fps>fps][-jpeg<Q>].h5``.

    The hash covers the root's absolute path, every video's relative path, size, mtime,
    label, group and split membership, the build parameters and the cache format version,
    so any change of the sources gives a new name (and a new build).
    """
    root = Path(index.root).resolve()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", root.name).strip("._") or "data"
    digest = hashlib.sha1((index_key(index, size, fps, codec) + json.dumps(str(root))).encode()).hexdigest()[:12]
    rate = f"-{fps:g}fps" if fps else ""
    kind = "" if codec == "raw" else "-" + codec.replace(":", "")
    return f"{stem[:40]}-{digest}-{int(size[0])}x{int(size[1])}{rate}{kind}.h5"


def default_cache_path(index: Any, size: tuple[int, int] = DEFAULT_SIZE, fps: float | None = None, codec: str = "raw") -> Path:
    """Where the cache of ``index`` lives by default: ``cache_dir() / cache_name(...)``."""
    return cache_dir() / cache_name(index, size, fps, codec)
