"""Parsers of the values every command shares: frame sizes, fold lists, ``--set`` items, TOML.

One home for each (issue 11 item 5): every command and library function parses a size, a
split list or a config file here, so the same input gets the same one-line error
(:class:`~cstp_cli.errors.UsageError`, exit 2) whichever command reads it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Sequence

from cstp_cli.errors import UsageError

#: Largest side a frame size may have (a sanity bound; 8K video is 7680 wide).
MAX_SIDE = 8192


def parse_size(text: str | Sequence[int], flag: str = "--size") -> tuple[int, int]:
    """``"171x128"`` (width × height; ``×`` also accepted) or ``(171, 128)`` → ``(171, 128)``.

    Raises :class:`UsageError` naming ``flag`` when the text is not two integers between 1
    and :data:`MAX_SIDE` joined by ``x``.
    """
    if isinstance(text, (tuple, list)):
        parts = [str(v) for v in text]
    else:
        parts = str(text).strip().lower().replace("×", "x").split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        w, h = int(parts[0]), int(parts[1])
    except ValueError:
        raise UsageError(f"{flag} expects WIDTHxHEIGHT such as 171x128, got {text!r}") from None
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise UsageError(f"{flag} {text!r}: both sides must be between 1 and {MAX_SIDE}")
    return w, h


def format_size(size: Sequence[int]) -> str:
    """``(171, 128)`` → ``"171x128"``."""
    return f"{int(size[0])}x{int(size[1])}"


def parse_splits(text: Any, flag: str = "--split") -> list[int]:
    """``"1,2,3"`` (or an int, or a TOML list) → ``[1, 2, 3]``; at least one fold number."""
    items_in = text if isinstance(text, (list, tuple)) else str(text).split(",")
    try:
        items = [int(x) for x in items_in if str(x).strip()]
    except ValueError:
        raise UsageError(f"{flag} expects fold numbers such as 1 or 1,2,3, got {text!r}") from None
    if not items:
        raise UsageError(f"{flag} needs at least one fold number")
    return items


def parse_sets(items: Sequence[str] | None) -> dict[str, dict[str, str]]:
    """``["stor.candidates=4", ...]`` → ``{"stor": {"candidates": "4"}}`` (``--set``, repeatable)."""
    out: dict[str, dict[str, str]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        comp, dot, option = key.strip().partition(".")
        if not sep or not dot or not comp or not option:
            raise UsageError(f"--set expects COMPONENT.OPTION=VALUE such as stor.candidates=4, got {item!r}")
        out.setdefault(comp, {})[option] = value.strip()
    return out


# --------------------------------------------------------------------------- setting checks
# For ``setting(..., check=...)`` (cstp_cli.core.settings): a problem text, or None.


def size_problem(value: Any) -> str | None:
    """Why ``value`` is not a ``WxH`` frame size, or None."""
    try:
        parse_size(value)
    except UsageError:
        return f"expects WIDTHxHEIGHT such as 171x128, got {value!r}"
    return None


def splits_problem(value: Any) -> str | None:
    """Why ``value`` is not a fold list such as ``1,2,3``, or None."""
    try:
        parse_splits(value)
    except UsageError:
        return f"expects fold numbers such as 1 or 1,2,3, got {value!r}"
    return None


def positive_problem(value: Any) -> str | None:
    """Why ``value`` is not a positive number, or None."""
    return None if value > 0 else f"must be positive, got {value}"


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; one clear :class:`UsageError` line when it is missing or invalid."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist; pass a TOML file to --config") from None
    except IsADirectoryError:
        raise UsageError(f"config file {path} is a folder; pass a TOML file to --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
