"""What ``DATA`` means on every command line (DESIGN "Data flow").

``DATA`` is a dataset root — its cache is built on first use, or reused, in the cache
folder (:func:`cstp_cli.core.paths.cache_dir`), under a name keyed by the root's absolute path,
the source fingerprints (each video's size and mtime, label and split membership) and the
build parameters — or a cache file (``.h5``). No ``DATA``: the built-in synthetic dataset,
generated and cached on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

from cstp_cli.data.cache.codec import DEFAULT_JPEG_QUALITY
from cstp_cli.data.cache.naming import default_cache_path
from cstp_cli.errors import CacheError, DataError

__all__ = ["resolve_data"]

_DEFAULT_SIZE = (171, 128)
#: Compression of the built-in synthetic dataset's cache. The set is rendered at 64×48 and
#: cached at that native size (about 330 MB uncompressed, under issue 2's 1 GB), so reads
#: stay memory-mapped copies; upsampling it to 171×128 would only cost space (2.3 GB).
SYNTHETIC_COMPRESSION = "none"


def resolve_data(
    data: str | os.PathLike | None,
    size: tuple[int, int] | None = _DEFAULT_SIZE,
    workers: int | None = None,
    build: bool = True,
    progress: bool = True,
    fps: float | None = None,
    compression: str | None = None,
) -> Path:
    """Turn ``DATA`` into the path of a cache file, building the cache when needed.

    * a cache file: checked (format version; with ``size`` given, a cache of another frame
      size is refused with a one-line :class:`CacheError`); ``size=None`` accepts any size;
    * a dataset root: its cache in the cache folder, reused when it exists (the raw cache,
      else one built with ``cstp cache build DATA --codec jpeg`` at the default quality), else built with
      ``size`` (default 171×128), ``workers`` decoder processes and ``fps`` normalisation
      (``build=False`` raises :class:`CacheError` instead of building);
    * ``None``: the built-in synthetic dataset, generated and cached on first use at its
      native frame size (64×48) unless another ``size`` than the default is asked for.

    ``compression`` of a new cache: ``None`` means ``"none"`` for a dataset root and
    :data:`SYNTHETIC_COMPRESSION` for the built-in synthetic dataset.

    A missing path raises :class:`DataError`; a build where no video decodes raises
    :class:`CacheError` naming the first failure.
    """
    from cstp_cli.data.cache import CacheReader, build_cache, is_cache_file

    if data is None:
        from cstp_cli.data.synth import default_dataset_root

        from cstp_cli.data.synth import DEFAULT_SYNTH

        path = Path(default_dataset_root())
        compression = compression or SYNTHETIC_COMPRESSION
        if size is None or tuple(size) == _DEFAULT_SIZE:
            size = tuple(DEFAULT_SYNTH["size"])  # the set's native frame size
    else:
        path = Path(data).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; give a dataset folder or a cache file (.h5)")
    if path.is_file():
        if not is_cache_file(path):
            raise DataError(f"{path} is neither a dataset folder nor an HDF5 cache file (.h5)")
        CacheReader(path, size=size)
        return path.resolve()

    from cstp_cli.data.datasets import load_dataset

    build_size = tuple(size) if size is not None else _DEFAULT_SIZE
    index = load_dataset(path)
    out = default_cache_path(index, build_size, fps)
    jpeg = default_cache_path(index, build_size, fps, codec=f"jpeg:{DEFAULT_JPEG_QUALITY}")
    for found in (out, jpeg):
        if found.exists():
            try:
                CacheReader(found, size=build_size)
                return found
            except CacheError:
                pass  # damaged or of another format version: rebuild it
    if not build:
        raise CacheError(f"no cache of {path} at {build_size[0]}x{build_size[1]}; build it with `cstp cache build {path}`")
    result = build_cache(
        path, out=out, size=build_size, workers=workers, compression=compression or "none", fps=fps,
        progress=progress, index=index, reuse=True,
    )
    if result.path is None:
        first = f" (first: {result.failed[0][0]}: {result.failed[0][1]})" if result.failed else ""
        raise CacheError(f"no video of {path} could be decoded{first}; see `cstp cache build {path}`")
    return result.path
