"""The pair dataset and its resumable, world-size-ready loader (DESIGN "Data flow").

An epoch is a global order of the training videos, ``epoch_order(seed, epoch, n)``
(METHOD §0). Item ``(epoch, j)`` is sample ``i = order[j]``: its plan comes from
``plan_rng(seed, epoch, i)`` and its frames from the cache — so a sample's pixels depend on
neither the worker count nor the world size. Each step takes the next global batch of G
positions; rank r of W takes positions ``[r·G/W, (r+1)·G/W)`` of it. Resuming starts at the
first unconsumed position.
"""

from __future__ import annotations

import signal
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cstp_cli.api import PairPlan, PlanBatch, collate_plans
from cstp_cli.errors import UsageError


class PairDataset(Dataset):
    """Item ``(epoch, j)`` → ``(frames uint8[2, T, H, W, 3], PairPlan)``.

    ``videos``: cache indices of the training videos (the split's train set), in cache order;
    sample ``i`` of an epoch is ``videos[i]``. ``reader`` is a picklable ``CacheReader``
    (opened lazily in each worker); ``sampler`` a ``PairSampler``. ``decode_on_device``
    (a jpeg cache on CUDA): items carry the pair's distinct JPEG frames undecoded
    (:class:`cstp_cli.engine.prefetch.EncodedPair`) for the device to decode; otherwise the
    reader decodes only the frames the plan names, in the worker.
    """

    def __init__(self, reader: Any, videos: Sequence[int], sampler: Any, seed: int, decode_on_device: bool = False):
        self.reader = reader
        self.decode_on_device = bool(decode_on_device)
        self.videos = np.asarray(videos, dtype=np.int64)
        self.sampler = sampler
        self.seed = int(seed)
        self.frame_wh = tuple(int(v) for v in reader.frame_wh)
        self._lengths = np.asarray([int(reader.num_frames[int(v)]) for v in self.videos], dtype=np.int64)
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.videos)

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's global order of sample indices (METHOD §0), cached per epoch."""
        from cstp_cli.plans.sampling import epoch_order

        if epoch not in self._orders:
            self._orders = {epoch: np.asarray(epoch_order(self.seed, epoch, len(self.videos)))}
        return self._orders[epoch]

    def plan(self, epoch: int, j: int) -> PairPlan:
        """The plan of position ``j`` of ``epoch`` (no pixels)."""
        from cstp_cli.plans.sampling import plan_rng

        i = int(self.order(epoch)[j])
        video = int(self.videos[i])
        return self.sampler.plan(video, int(self._lengths[i]), self.frame_wh, plan_rng(self.seed, epoch, i))

    def __getitem__(self, item: tuple[int, int]) -> tuple[Any, PairPlan]:
        epoch, j = item
        plan = self.plan(epoch, j)
        if self.decode_on_device:
            from cstp_cli.engine.prefetch import EncodedPair

            idx = np.asarray(plan.idx)
            blobs, inverse = self.reader.read_encoded(plan.video, idx.reshape(-1))
            w, h = self.frame_wh
            return EncodedPair(blobs, inverse, (*idx.shape, h, w, 3)), plan
        frames = self.reader.read_pair(plan.video, plan.idx)
        return torch.from_numpy(np.ascontiguousarray(frames)), plan


def collate_pairs(items: list[tuple[Any, PairPlan]]) -> tuple[Any, PlanBatch]:
    """Stack to ``(frames uint8[B, 2, T, H, W, 3], PlanBatch)`` (undecoded items: one
    :class:`~cstp_cli.engine.prefetch.EncodedBatch`, decoded by its ``to(device)``)."""
    from cstp_cli.engine.prefetch import EncodedBatch, EncodedPair

    if items and isinstance(items[0][0], EncodedPair):
        return EncodedBatch([f for f, _ in items]), collate_plans([p for _, p in items])
    frames = torch.stack([f for f, _ in items])
    return frames, collate_plans([p for _, p in items])


class ResumableSampler(Sampler):
    """Yields ``(epoch, j)`` for this rank's share of global steps ``start_step … stop_step−1``.

    Global step b is batch ``b % spe`` of epoch ``b // spe`` (``spe`` = steps per epoch) and
    covers positions ``[k·G, (k+1)·G)`` of that epoch's order (k = b % spe); rank r of W takes
    ``[k·G + r·G/W, k·G + (r+1)·G/W)``. Positions past ``spe·G`` (an incomplete batch) are
    never used. One sampler spans every remaining epoch, so one DataLoader serves the run.
    """

    def __init__(self, start_step: int, stop_step: int, steps_per_epoch: int, global_batch: int, rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise UsageError(f"--batch-size {global_batch} is not divisible by the world size {world_size}")
        self.start_step, self.stop_step, self.spe = int(start_step), int(stop_step), int(steps_per_epoch)
        self.global_batch, self.rank, self.world_size = int(global_batch), int(rank), int(world_size)
        self.local_batch = self.global_batch // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        lo = self.rank * self.local_batch
        for b in range(self.start_step, self.stop_step):
            epoch, k = divmod(b, self.spe)
            base = k * self.global_batch + lo
            for j in range(base, base + self.local_batch):
                yield (epoch, j)

    def __len__(self) -> int:
        return max(0, self.stop_step - self.start_step) * self.local_batch


def steps_per_epoch(num_samples: int, global_batch: int) -> int:
    """Full global batches per epoch; a usage error when there is not even one."""
    steps = num_samples // global_batch
    if steps < 1:
        raise UsageError(
            f"--batch-size {global_batch} is larger than the {num_samples} training videos; lower --batch-size"
        )
    return steps


def ignore_stop_signals(worker_id: int) -> None:
    """Worker init: SIGINT/SIGTERM are the main process's to handle (it finishes the step,
    saves and shuts the workers down), so a Ctrl-C or a job-wide SIGTERM never kills a
    worker under the main process mid-step."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(
    dataset: PairDataset,
    *,
    start_step: int,
    stop_step: int,
    steps_per_epoch: int,
    global_batch: int,
    workers: int,
    pin_memory: bool,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A DataLoader over global steps ``start_step … stop_step−1`` (across epochs).

    Its ``generator`` is private so that creating the iterator never draws from the global
    torch RNG (resume stays bit-exact); items carry their epoch, so workers hold no state.
    """
    sampler = ResumableSampler(start_step, stop_step, steps_per_epoch, global_batch, rank, world_size)
    return DataLoader(
        dataset,
        batch_size=sampler.local_batch,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_pairs,
        pin_memory=pin_memory,
        drop_last=False,
        generator=torch.Generator().manual_seed(0),
        worker_init_fn=ignore_stop_signals if workers > 0 else None,
        prefetch_factor=4 if workers > 0 else None,
    )
