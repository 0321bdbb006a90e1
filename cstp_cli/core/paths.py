"""Where cstp keeps things: the cache folder (DESIGN "Data flow")."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache folder: ``$CSTP_CACHE_DIR``, else ``./cache`` when it exists (a checkout),
    else the user's cache directory (``$XDG_CACHE_HOME/cstp`` or ``~/.cache/cstp``)."""
    env = os.environ.get("CSTP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    local = Path.cwd() / "cache"
    if local.is_dir():
        return local
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cstp"
