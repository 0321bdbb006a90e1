"""Jpeg frames decoded off the workers: encoded batches, the prefetch thread, a step on a jpeg cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cstp_cli.data.cache import CacheReader
from cstp_cli.data.memcache import render_videos, write_cache
from cstp_cli.engine import loop
from cstp_cli.engine.data import PairDataset, collate_pairs
from cstp_cli.engine.metrics import read_metrics
from cstp_cli.engine.prefetch import DevicePrefetcher, EncodedBatch, use_device_decode

CUDA = torch.cuda.is_available()
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def jpeg_cache(tmp_path_factory):
    """12 videos × 20 frames of 40×32 as a jpeg cache (fold 1: all train)."""
    return write_cache(render_videos(12, 20, (40, 32), seed=3), tmp_path_factory.mktemp("jpeg") / "j.h5", codec="jpeg")


def _dataset(path, decode_on_device):
    from cstp_cli.plans.sampling import PairSampler

    reader = CacheReader(path)
    return PairDataset(reader, reader.split(1, "train"), PairSampler([], T=4), seed=0, decode_on_device=decode_on_device)


def test_encoded_batch_decodes_to_the_frames_the_workers_would_give(jpeg_cache):
    decoded, encoded = _dataset(jpeg_cache, False), _dataset(jpeg_cache, True)
    items = [(0, j) for j in range(3)]
    frames, plans = collate_pairs([decoded[i] for i in items])
    batch, plans_e = collate_pairs([encoded[i] for i in items])
    assert isinstance(batch, EncodedBatch) and batch.shape == tuple(frames.shape)
    assert len(batch.sizes) <= 3 * 2 * 4  # distinct frames only
    assert torch.equal(batch.to("cpu"), frames)
    assert torch.equal(plans.idx, plans_e.idx)


def test_device_decode_is_off_on_cpu_and_for_raw_caches(jpeg_cache, tiny_cache):
    assert not use_device_decode(CacheReader(jpeg_cache), torch.device("cpu"))
    assert not use_device_decode(CacheReader(tiny_cache), torch.device("cpu"))


def test_prefetcher_yields_every_batch_in_order_then_stops():
    batches = [(torch.full((2,), k), f"plans{k}") for k in range(5)]
    pf = DevicePrefetcher(iter(batches), torch.device("cpu"), depth=2)
    got = [(int(f[0]), p) for f, p in pf]
    assert got == [(k, f"plans{k}") for k in range(5)]
    with pytest.raises(StopIteration):
        next(pf)
    pf.close()
    assert not pf.thread.is_alive()


def test_prefetcher_reraises_a_loader_error_in_the_consumer():
    def loader():
        yield torch.zeros(1), "ok"
        raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Interrupt")

    pf = DevicePrefetcher(loader(), torch.device("cpu"))
    next(pf)
    with pytest.raises(RuntimeError, match="killed by signal"):
        next(pf)
    pf.close()


def test_prefetcher_close_stops_a_thread_blocked_on_a_full_queue():
    def endless():
        while True:
            yield torch.zeros(1), None

    pf = DevicePrefetcher(endless(), torch.device("cpu"), depth=1)
    next(pf)
    pf.close()
    assert not pf.thread.is_alive()


def test_pretraining_on_a_jpeg_cache_gives_the_same_step_with_worker_or_prefetch_decode(tiny_config, jpeg_cache, tmp_path, monkeypatch):
    workers = loop.pretrain(tiny_config(data=str(jpeg_cache), epochs=1, max_steps=2, out=str(tmp_path / "w")), progress=False)
    from cstp_cli.engine import prefetch

    monkeypatch.setattr(prefetch, "use_device_decode", lambda reader, device: True)  # the CUDA wiring, decoded on the CPU
    prefetched = loop.pretrain(tiny_config(data=str(jpeg_cache), epochs=1, max_steps=2, out=str(tmp_path / "p")), progress=False)
    a, b = read_metrics(workers.metrics), read_metrics(prefetched.metrics)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2] and all(np.isfinite(r["loss"]) for r in a)
    assert [r["loss"] for r in a] == [r["loss"] for r in b]


@pytest.mark.skipif(not CUDA, reason="needs CUDA (nvJPEG decode parity)")
def test_cuda_decode_matches_cpu_decode_within_jpeg_tolerance(jpeg_cache):
    encoded = _dataset(jpeg_cache, True)
    batch, _ = collate_pairs([encoded[(0, j)] for j in range(4)])
    cpu = batch.to("cpu")
    dev = batch.pin_memory().to("cuda", non_blocking=True)
    assert dev.device.type == "cuda" and dev.shape == cpu.shape and dev.dtype == torch.uint8
    diff = (dev.cpu().int() - cpu.int()).abs()
    assert diff.max() <= 4 and diff.float().mean() < 0.5  # nvJPEG and libjpeg-turbo round differently


@pytest.mark.skipif(not CUDA, reason="needs CUDA (side-stream prefetch)")
def test_cuda_prefetcher_gives_the_same_frames_as_a_plain_decode(jpeg_cache):
    encoded = _dataset(jpeg_cache, True)
    batches = [collate_pairs([encoded[(0, j)] for j in range(k, k + 2)]) for k in (0, 2, 4)]
    expected = [b.to("cuda") for b, _ in batches]
    pf = DevicePrefetcher(iter(batches), torch.device("cuda"))
    got = [f for f, _ in pf]
    pf.close()
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
