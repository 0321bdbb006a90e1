"""Pair dataset and resumable sampler (METHOD §0: per-sample RNG, global batches)."""

from __future__ import annotations

import pytest
import torch

from cstp_cli.engine.data import PairDataset, ResumableSampler, make_loader, steps_per_epoch
from cstp_cli.errors import UsageError


def test_ranks_split_each_global_batch_into_disjoint_shares():
    whole = list(ResumableSampler(0, 4, steps_per_epoch=2, global_batch=6))
    shares = [list(ResumableSampler(0, 4, 2, 6, rank=r, world_size=3)) for r in range(3)]
    for step in range(4):
        batch = whole[step * 6:(step + 1) * 6]
        assert sum((s[step * 2:(step + 1) * 2] for s in shares), []) == batch
    assert whole[:12] == [(0, j) for j in range(12)] and whole[12:] == [(1, j) for j in range(12)]


def test_sampler_resumes_at_the_first_unconsumed_position():
    whole = list(ResumableSampler(0, 6, 3, 4))
    assert list(ResumableSampler(4, 6, 3, 4)) == whole[16:]


def test_batch_larger_than_the_split_is_a_usage_error():
    with pytest.raises(UsageError, match="larger than the 5 training videos"):
        steps_per_epoch(5, 8)


def test_items_do_not_depend_on_worker_count(tiny_cache):
    from cstp_cli.data.cache import CacheReader
    from cstp_cli.plans.sampling import PairSampler

    reader = CacheReader(tiny_cache)
    dataset = PairDataset(reader, reader.split(1, "train"), PairSampler([], T=4), seed=1)
    loaders = [make_loader(dataset, start_step=1, stop_step=3, steps_per_epoch=3, global_batch=4, workers=w, pin_memory=False) for w in (0, 2)]
    (a, b) = [list(loader) for loader in loaders]
    assert len(a) == len(b) == 2
    for (fa, pa), (fb, pb) in zip(a, b):
        assert fa.dtype == torch.uint8 and fa.shape == (4, 2, 4, 32, 40, 3)
        assert torch.equal(fa, fb) and torch.equal(pa.idx, pb.idx) and torch.equal(pa.boxes, pb.boxes)
    order = dataset.order(0)
    assert sorted(order.tolist()) == list(range(12))
    assert a[0][1].video.tolist() == [int(dataset.videos[i]) for i in order[4:8]]
