"""Checksums of the frames a cache stores (``cstp cache verify``).

Each video gets a BLAKE2b-128 digest of its stored frame bytes, in frame order, computed
while the build copies them into the cache and kept in ``videos/checksum`` (hex); the
root attribute ``checksum`` names the algorithm. ``cstp cache verify`` reads the stored
bytes again and compares, so silent corruption of the frames (a bad disk, a damaged copy)
is found. The digest covers what is stored, whatever the storage codec.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

#: Value of the root attribute ``checksum``: the digest of ``videos/checksum``.
CHECKSUM = "blake2b-128 of each video's stored frame bytes"

#: Frames read per block when verifying.
VERIFY_BLOCK = 256


def frames_digest() -> Any:
    """A fresh digest object; ``update`` it with each block of stored bytes in order."""
    return hashlib.blake2b(digest_size=16)


def stored_checksum(frames: Any, start: int, stop: int, block: int = VERIFY_BLOCK) -> str:
    """Hex digest of ``frames[start:stop]`` as stored (uint8 ``[n, H, W, 3]``), read in
    contiguous blocks (never h5py fancy selection)."""
    digest = frames_digest()
    for a in range(start, stop, block):
        digest.update(np.ascontiguousarray(frames[a : min(stop, a + block)]).data)
    return digest.hexdigest()
