"""Feature files of ``cstp embed -o features.h5``: written atomically, read back with their switches."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from cstp_cli.core.fsutil import atomic_path
from cstp_cli.core.safewrite import guarded_open, write_failure
from cstp_cli.data.cache.layout import STR, attr, read_strings, strings
from cstp_cli.errors import CacheError, CstpError

FEATURES_FORMAT = "cstp-features"


def write_features(
    path: str | os.PathLike, features: np.ndarray, labels: np.ndarray, paths: Sequence[str], attrs: dict[str, Any]
) -> Path:
    """Write video features atomically as HDF5 (``cstp embed -o features.h5``).

    Datasets: ``features float32[V, F]``, ``labels int64[V]``, ``paths`` (UTF-8 strings);
    root attributes: ``format`` = ``"cstp-features"`` and ``attrs`` (JSON-able values;
    lists and dicts are stored as JSON text). A failed write (full disk, unwritable
    folder) raises :class:`CacheError` (one line); no temporary file stays and an existing
    file at ``path`` is untouched.
    """
    path = Path(path)
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if features.ndim != 2 or len(labels) != len(features) or len(paths) != len(features):
        raise CstpError(f"features {features.shape}, labels {labels.shape} and {len(paths)} paths do not agree")
    try:
        with atomic_path(path) as tmp, guarded_open(tmp) as fh, h5py.File(fh, "w") as f:
            f.create_dataset("features", data=features)
            f.create_dataset("labels", data=labels)
            f.create_dataset("paths", data=strings(paths), dtype=STR)
            f.attrs["format"] = FEATURES_FORMAT
            for key, value in attrs.items():
                f.attrs[key] = json.dumps(value) if isinstance(value, (list, tuple, dict)) else value
    except (OSError, RuntimeError) as exc:  # h5py raises either on a failed write
        raise CacheError(f"cannot write features {path}: {write_failure(exc)}; free space or choose another -o") from None
    return path


def read_features(path: str | os.PathLike) -> dict[str, Any]:
    """Read a file of :func:`write_features`: ``features``, ``labels``, ``paths``, ``attrs``."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FEATURES_FORMAT:
                raise CacheError(f"{path} is not a cstp features file; write one with `cstp embed -o FILE.h5`")
            return {
                "features": f["features"][...],
                "labels": f["labels"][...],
                "paths": read_strings(f["paths"]),
                "attrs": {k: attr(v) for k, v in f.attrs.items() if k != "format"},
            }
    except OSError as exc:
        raise CacheError(f"{path}: cannot read features ({exc})") from exc
