"""The HDF5 frame cache: writer, reader, info and verify (DESIGN "HDF5 cache").

This package is the only part of cstp that imports :mod:`h5py` (the decoder pool,
:mod:`cstp_cli.data.decodepool`, and the naming, :mod:`.naming`, do not need it). The format is documented in
``cache/README.md``; in short, one flat ``frames`` dataset ``(N, H, W, 3) uint8`` chunked by
a few frames, per-video tables under ``videos/`` (``offsets`` of length V+1, ``path``,
``label``, ``fps``, ``group``, source fingerprints), per-fold split membership under
``splits/``, ``classes``, ``failures/`` (path + reason) and root attributes (format version,
build parameters, library versions).

Build (:func:`build_cache`): videos are decoded in worker processes (forkserver or spawn,
never fork) with a per-video timeout, so a hanging or crashing decoder costs one video.
Finished batches are written as shard files under a temporary name and renamed, so a
killed build resumes from its finished shards; the final file is assembled from the shards
in dataset order and appears by atomic rename only when complete.

Read (:class:`CacheReader`): picklable, opens the file lazily in each process (DataLoader
workers under fork or spawn); frames are read as contiguous runs or single frames, never
with h5py fancy or step selection (≈200× slower).
"""

from cstp_cli.data.cache.build import BuildResult, build_cache
from cstp_cli.data.cache.features import FEATURES_FORMAT, read_features, write_features
from cstp_cli.data.cache.inspect import cache_info, verify_cache
from cstp_cli.data.cache.layout import CHUNK_FRAMES, DEFAULT_SIZE, FORMAT, FORMAT_VERSION, MERGE_GAP, is_cache_file, library_versions
from cstp_cli.data.cache.naming import cache_name, default_cache_path, index_key
from cstp_cli.data.cache.reader import CacheReader
from cstp_cli.data.cache.shards import shard_dir_for
from cstp_cli.data.decodepool import source_fingerprint

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "DEFAULT_SIZE",
    "CHUNK_FRAMES",
    "MERGE_GAP",
    "FEATURES_FORMAT",
    "BuildResult",
    "CacheReader",
    "build_cache",
    "cache_info",
    "verify_cache",
    "source_fingerprint",
    "is_cache_file",
    "library_versions",
    "write_features",
    "read_features",
    "shard_dir_for",
    "cache_name",
    "default_cache_path",
    "index_key",
]
