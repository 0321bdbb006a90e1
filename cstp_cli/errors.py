"""Error hierarchy of cstp and the exit code each one maps to (DESIGN "Errors").

Expected failures (bad path, unknown plugin, corrupt video, cache mismatch, parity
failure, NaN loss) are :class:`CstpError` subclasses: the CLI prints their message as one
line and exits 1. Usage errors exit 2. Anything else is a bug: exit 3 with a hint to set
``CSTP_DEBUG=1`` for the traceback.
"""

from __future__ import annotations


class CstpError(Exception):
    """An expected failure: one clear line (what, which file, what to do), exit 1."""

    exit_code = 1


class UsageError(CstpError):
    """The command line asks for something that cannot work (exit 2, like Typer's)."""

    exit_code = 2


class PluginError(CstpError):
    """A plugin failed to load, a name is unknown, or two plugins claim one name."""


class UnknownComponentError(UsageError, PluginError):
    """A ``--backbone/--contrastive/--pretext`` name no installed plugin provides (exit 2;
    the message lists the installed names). Still a :class:`PluginError` for callers."""


class DataError(CstpError):
    """A dataset folder, split file or annotation file is missing or malformed."""


class VideoDecodeError(CstpError):
    """One video file could not be decoded; carries the file and the reason."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CacheError(CstpError):
    """A cache file is missing, corrupt, of another format version or other build parameters."""


class CheckpointError(CstpError):
    """A checkpoint is missing, unreadable, or not a cstp checkpoint of the expected kind."""


class TrainingError(CstpError):
    """Training cannot go on (e.g. a NaN/inf loss); the last good checkpoint is kept."""


class ExportError(CstpError):
    """ONNX export failed, or the exported model does not match PyTorch."""


class DistributedError(TrainingError):
    """A collective failed: another rank died, hung past ``CSTP_DIST_TIMEOUT`` or was unreachable."""
