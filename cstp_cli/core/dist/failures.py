"""Collective failures: a dead or hung rank becomes one :class:`DistributedError` line (DESIGN "Errors")."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import torch.distributed as dist

from cstp_cli.core.dist.context import (
    TIMEOUT_ENV,
    _first_line,
    rank_and_world,
    timeout_seconds,
)
from cstp_cli.errors import DistributedError

#: Substrings of the messages torch's backends raise when a peer died, hung or vanished.
_FAILURE_MARKS = (
    "connection closed by peer",
    "connection reset",
    "connection refused",
    "broken pipe",
    "timed out",
    "timeout",
    "watchdog",
    "nccl error",
    "ncclremoteerror",
    "ncclsystemerror",
)


F = TypeVar("F", bound=Callable[..., Any])
# --------------------------------------------------------------------------- failures


def is_collective_failure(exc: BaseException) -> bool:
    """True for the errors torch raises when a peer died, hung or the network failed."""
    if isinstance(exc, dist.DistError):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    return any(mark in text for mark in _FAILURE_MARKS)


def _failure_message(
    what: str, exc: BaseException, checkpoint: str | os.PathLike | None
) -> str:
    rank, world = rank_and_world()
    if checkpoint is None:
        kept = "checkpoints are written by rank 0 only, atomically: the last one is whole; continue with --resume"
    elif Path(checkpoint).is_file():
        kept = f"the last checkpoint {checkpoint} is intact; continue with --resume {checkpoint}"
    else:
        kept = "no checkpoint was written by this run yet"
    return (
        f"rank {rank}/{world}: {what} failed because another rank died or hung "
        f"(collectives wait at most {TIMEOUT_ENV}={timeout_seconds():g}s; {_first_line(exc)}); "
        f"see the other ranks' output for the cause; {kept}"
    )


@contextlib.contextmanager
def guard(what: str, checkpoint: str | os.PathLike | None = None) -> Iterator[None]:
    """Turn a failed collective inside the block into one :class:`DistributedError` line.

    ``what`` names the work (``"training step 12"``); ``checkpoint`` is the last one written,
    reported as intact (rank 0 wrote it atomically, so it is whole). A
    :class:`DistributedError` raised by a helper inside the block is re-worded with ``what``
    and ``checkpoint``. Other errors pass through unchanged. A no-op without a process group.
    """
    if rank_and_world()[1] == 1:
        yield
        return
    try:
        yield
    except DistributedError as exc:
        cause = exc.__cause__ or exc
        raise DistributedError(_failure_message(what, cause, checkpoint)) from cause
    except Exception as exc:
        if not is_collective_failure(exc):
            raise
        raise DistributedError(_failure_message(what, exc, checkpoint)) from exc


def _collective(what: str) -> Callable[[F], F]:
    """Decorator: the helper's collectives fail with one :class:`DistributedError` line."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with guard(what):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
