"""The process group: torchrun's environment, the device of each rank, joining and leaving (DESIGN "Engine").

See :mod:`cstp_cli.core.dist` for the whole picture."""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import re
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from cstp_cli.errors import DistributedError, UsageError

#: Seconds a collective waits for the other ranks before failing (``init_process_group`` timeout).
TIMEOUT_ENV = "CSTP_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0
#: Optional backend override (``gloo`` on GPUs for debugging); default: nccl on CUDA, gloo on CPU.
BACKEND_ENV = "CSTP_DIST_BACKEND"

# --------------------------------------------------------------------------- context


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the run.

    ``backend`` is ``"nccl"``, ``"gloo"`` or None (one process, no process group);
    ``device`` is the device this rank computes on (``cuda:LOCAL_RANK`` on GPUs).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes checkpoints, metrics and progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def _first_line(exc: BaseException) -> str:
    """The backend's reason in short: first line, no ``[source.cc:123]`` prefix, first sentence."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    line = re.sub(r"^\[[^\]]*\]\s*", "", line).split(". ")[0].rstrip(".")
    return line if len(line) <= 200 else line[:197] + "..."


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(
            f"environment variable {name}={value!r} is not an integer; launch with torchrun"
        ) from None


def timeout_seconds() -> float:
    """``CSTP_DIST_TIMEOUT`` in seconds (default 1800); a usage error if it is not a positive number."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(
            f"{TIMEOUT_ENV}={text!r}: give the collective timeout as a positive number of seconds"
        )
    return value


#: What ``--device`` accepts (``cuda:N`` picks one GPU; ``mps`` only where PyTorch has it).
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def _parse_device(name: str) -> torch.device:
    """``--device`` text → a ``torch.device`` of a type cstp can run on; a usage error otherwise."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    mps = (
        device is not None
        and device.type == "mps"
        and torch.backends.mps.is_available()
    )
    if device is None or not (device.type in ("cpu", "cuda") or mps):
        raise UsageError(
            f"--device {name}: not a device this machine runs cstp on; use {DEVICE_CHOICES}"
        )
    return device


def resolve_device(
    name: str | None = "auto", local_rank: int = 0, world_size: int = 1
) -> torch.device:
    """``auto``/``cpu``/``cuda``/``cuda:N`` → this process's device (``cuda:LOCAL_RANK`` under torchrun).

    The one place a ``--device`` value is checked: an unknown or unavailable device is a
    :class:`UsageError` (exit 2) that says what to pass instead.
    """
    name = (name or "auto").strip()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = _parse_device(name)
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        if world_size > 1:
            raise UsageError(
                f"--device {name}: multi-process runs support cpu (gloo) and cuda (NCCL) only"
            )
        return device
    if not torch.cuda.is_available():
        raise UsageError(
            f"--device {name}: CUDA is not available on this machine; use --device cpu"
        )
    if device.index is not None and world_size > 1:
        raise UsageError(
            f"--device {name}: under torchrun each rank uses cuda:LOCAL_RANK; pass --device cuda "
            "and pick GPUs with CUDA_VISIBLE_DEVICES"
        )
    if device.index is not None:
        index = device.index
    else:
        index = local_rank if world_size > 1 else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise UsageError(
            f"rank with LOCAL_RANK={local_rank} needs cuda:{index} but {torch.cuda.device_count()} GPU(s) are visible; "
            "lower torchrun --nproc-per-node to the number of GPUs per node"
        )
    return torch.device("cuda", index)


def _context_of_group(device: str) -> DistContext:
    """The context of an already initialised process group (idempotent :func:`init_distributed`)."""
    world = dist.get_world_size()
    local_rank = _env_int("LOCAL_RANK", dist.get_rank())
    return DistContext(
        rank=dist.get_rank(),
        world_size=world,
        local_rank=local_rank,
        device=resolve_device(device, local_rank, world),
        backend=str(dist.get_backend()),
        timeout_s=timeout_seconds(),
    )


def init_distributed(device: str = "auto") -> DistContext:
    """Join torchrun's process group (or describe the single process) and pick the device.

    Reads ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` (set by
    ``torchrun``). ``WORLD_SIZE`` unset or 1: no process group, ``DistContext(rank=0,
    world_size=1, backend=None)``. Otherwise ``init_process_group`` with NCCL on CUDA (this
    rank on ``cuda:LOCAL_RANK``) or gloo on CPU, ``env://`` rendezvous and a timeout of
    ``CSTP_DIST_TIMEOUT`` seconds. Calling it again returns the same context.

    Raises :class:`UsageError` for a bad environment or device, :class:`DistributedError` when
    the rendezvous fails.
    """
    if dist.is_available() and dist.is_initialized():
        return _context_of_group(device)
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    timeout = timeout_seconds()
    if world < 1 or not 0 <= rank < world:
        raise UsageError(
            f"RANK={rank} WORLD_SIZE={world} is not a valid rank of the run; launch with torchrun"
        )
    dev = resolve_device(device, local_rank, world)
    if world == 1:
        return DistContext(
            0, 1, local_rank if dev.type == "cuda" else 0, dev, None, timeout
        )
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise UsageError(
            f"WORLD_SIZE={world} but {' and '.join(missing)} not set; launch with "
            "`torchrun --nproc-per-node=G -m cstp_cli ...` (it sets them)"
        )
    backend = os.environ.get(BACKEND_ENV) or ("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        # A collective that outlives the timeout tears the process down instead of hanging,
        # so torchrun notices and stops the other ranks.
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    try:
        dist.init_process_group(
            backend,
            init_method="env://",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=timeout),
        )
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(
            f"rank {rank}/{world}: cannot join the process group at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({_first_line(exc)}); check the rendezvous "
            "endpoint, the firewall and that every node started"
        ) from exc
    atexit.register(cleanup)  # commands need not call cleanup() themselves
    return DistContext(rank, world, local_rank, dev, backend, timeout)


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single process)."""
    return rank_and_world()[0] == 0


#: How long :func:`cleanup` waits for the other ranks before leaving a gloo group (seconds).
CLEANUP_BARRIER_S = 30


def cleanup() -> None:
    """Leave the process group (best effort: after a failed peer the backend may refuse).

    On gloo every rank first waits for the others (a monitored barrier, at most
    :data:`CLEANUP_BARRIER_S`): a rank that tore its connections down while a peer still
    had a collective in flight could abort at exit ("terminate called without an active
    exception", seen on a 2-rank CPU retrieval in 1 run of 12)."""
    if dist.is_available() and dist.is_initialized():
        try:
            if dist.get_backend() == "gloo" and dist.get_world_size() > 1:
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=CLEANUP_BARRIER_S))
        except Exception:  # noqa: BLE001 - a dead peer must not mask the real error
            pass
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a dead peer must not mask the real error
            pass


@contextlib.contextmanager
def distributed(device: str = "auto") -> Iterator[DistContext]:
    """``with distributed(cfg["device"]) as ctx:`` — :func:`init_distributed`, then :func:`cleanup`.

    A process group that existed before the block (initialised by the caller) is left alone.
    """
    owner = not (dist.is_available() and dist.is_initialized())
    ctx = init_distributed(device)
    try:
        yield ctx
    finally:
        if owner:
            cleanup()
