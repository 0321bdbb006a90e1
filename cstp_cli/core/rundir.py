"""Run folders: a command that writes one never replaces a run that is already there.

A run folder (``cstp pretrain -o RUN``, ``cstp finetune/linear --out RUN``) holds the
only copy of what may be days of training. :func:`check_run_folder` is called up front,
before any data is read or built: it makes a real write test
(:func:`cstp_cli.core.fsutil.check_output_dir`) and refuses, with a :class:`UsageError`
(exit 2), a folder that already holds a started or finished run unless the command was
asked to continue it (DESIGN "Errors": nothing a user had is lost).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from cstp_cli.core.fsutil import check_output_dir
from cstp_cli.errors import UsageError

__all__ = ["existing_run_files", "check_run_folder"]


def existing_run_files(folder: str | os.PathLike, patterns: Sequence[str]) -> list[Path]:
    """Files of ``folder`` matching any glob of ``patterns`` (e.g. ``"split*/checkpoint.pt"``), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = {p for pattern in patterns for p in folder.glob(pattern) if p.is_file()}
    return sorted(found)


def check_run_folder(
    folder: str | os.PathLike,
    patterns: Sequence[str],
    *,
    flag: str,
    resume: bool = False,
    continue_hint: str | None = None,
) -> Path:
    """Check that ``folder`` can hold a new run (or the continued one); return it.

    Args:
        folder: the run folder the command will write.
        patterns: globs, relative to ``folder``, of the files a run leaves
            (``("checkpoint.pt", "metrics.jsonl")``); any match means the folder holds a run.
        flag: the option that names the folder (``"-o"``, ``"--out"``), for the message.
        resume: the command continues the run in ``folder``: existing files are expected.
        continue_hint: how to continue it, e.g. ``"--resume RUN/checkpoint.pt"``; None when
            the run there cannot be continued (say so and offer only another ``flag``).

    Raises :class:`UsageError` (exit 2) naming the folder, what it holds and what to do, when
    the folder holds a run and ``resume`` is False, or cannot be written (a file, read-only,
    no space). Nothing is created besides missing parent folders.
    """
    folder = Path(folder)
    if not resume:
        found = existing_run_files(folder, patterns)
        if found:
            what = ", ".join(str(p.relative_to(folder)) for p in found[:4]) + (", ..." if len(found) > 4 else "")
            todo = f"continue it with {continue_hint} or choose another {flag}" if continue_hint else f"choose another {flag}"
            raise UsageError(f"{folder} already holds a run ({what}); it is kept: {todo}")
    return check_output_dir(folder, flag)
