"""JPEG frames decoded on the device, overlapped with the step (issue 14, DESIGN "Data flow").

With a jpeg cache on CUDA the loader workers do not decode: each item carries its pair's
distinct JPEG frames (:class:`EncodedPair`), a batch is one buffer of bytes
(:class:`EncodedBatch`, pinned by the DataLoader), and :class:`DevicePrefetcher` decodes the
next batch with nvJPEG (:func:`cstp_cli.data.cache.codec.decode_device`) on its own CUDA
stream in a background thread while the current step runs. The step then sees what it sees
with a raw cache: uint8 [B, 2, T, H, W, 3] (on the device).

Elsewhere (CPU runs, a raw cache, ``CSTP_JPEG_DECODE=cpu``, a torchvision without nvJPEG)
the workers decode and nothing here is used.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: ``cpu`` forces a jpeg cache to be decoded in the loader workers even on CUDA.
DECODE_ENV = "CSTP_JPEG_DECODE"


def use_device_decode(reader: Any, device: torch.device) -> bool:
    """True when ``reader`` is a jpeg cache, ``device`` is CUDA, :data:`DECODE_ENV` is not
    ``cpu`` and torchvision decodes JPEG on that device."""
    from cstp_cli.data.cache.codec import device_decode_available

    if getattr(reader, "codec", None) is None or reader.codec.is_raw or torch.device(device).type != "cuda":
        return False
    if os.environ.get(DECODE_ENV, "auto").strip().lower() == "cpu":
        return False
    return device_decode_available(device)


@dataclass
class EncodedPair:
    """One item's frames undecoded: ``blobs`` the U distinct JPEG frames (uint8 arrays),
    ``inverse`` int64 [2·T] (frame k of the pair, clip-major, is blob ``inverse[k]``),
    ``shape`` (2, T, H, W, 3) of the decoded pair."""

    blobs: list
    inverse: np.ndarray
    shape: tuple


class EncodedBatch:
    """A batch of :class:`EncodedPair`: ``data`` uint8 [total bytes] (every blob end to end),
    ``sizes`` int64 [U] (bytes per blob), ``inverse`` int64 [B·2·T] (indices into the U
    blobs), ``shape`` (B, 2, T, H, W, 3). ``pin_memory`` (called by the DataLoader) pins the
    byte buffer; ``to(device)`` decodes → uint8 tensor of ``shape`` on ``device``."""

    def __init__(self, pairs: list[EncodedPair]):
        sizes, parts, inverse, base = [], [], [], 0
        for p in pairs:
            parts += [np.asarray(b, dtype=np.uint8).reshape(-1) for b in p.blobs]
            sizes += [len(b) for b in p.blobs]
            inverse.append(np.asarray(p.inverse, dtype=np.int64) + base)
            base += len(p.blobs)
        self.data = torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0, np.uint8))
        self.sizes = torch.tensor(sizes, dtype=torch.int64)
        self.inverse = torch.from_numpy(np.concatenate(inverse) if inverse else np.zeros(0, np.int64))
        self.shape = (len(pairs), *pairs[0].shape) if pairs else (0,)

    def pin_memory(self, device: Any = None) -> EncodedBatch:
        self.data, self.inverse = self.data.pin_memory(), self.inverse.pin_memory()
        return self

    def blobs(self) -> list[torch.Tensor]:
        """The U JPEG frames as 1-D uint8 views of ``data``."""
        return list(torch.split(self.data, self.sizes.tolist())) if len(self.sizes) else []

    def to(self, device: Any, non_blocking: bool = False) -> torch.Tensor:
        """Decode on ``device`` (CUDA: one nvJPEG batch; CPU: the worker decoder) and
        gather to uint8 ``shape``."""
        from cstp_cli.data.cache.codec import decode_cpu, decode_device

        device = torch.device(device)
        h, w = self.shape[-3], self.shape[-2]
        if device.type == "cuda":
            distinct = decode_device(self.blobs(), device, (h, w))
            index = self.inverse.to(device, non_blocking=non_blocking)
        else:
            out = np.empty((len(self.sizes), h, w, 3), np.uint8)
            distinct = torch.from_numpy(decode_cpu([b.numpy() for b in self.blobs()], out))
            index = self.inverse
        return distinct.index_select(0, index).reshape(self.shape)


class DevicePrefetcher:
    """Iterator over ``(frames on device, PlanBatch)`` from a loader iterator of
    ``(EncodedBatch | Tensor, PlanBatch)``: a background thread takes the next batch, copies and
    decodes it on a side CUDA stream and queues it with an event; ``__next__`` makes the
    current stream wait for that event, so up to ``depth`` batches are decoded while the
    current step runs. Exceptions of the loader (e.g. workers killed by Ctrl-C) are re-raised
    in order; :meth:`close` stops the thread.
    """

    _END = object()

    def __init__(self, iterator: Iterator, device: torch.device, depth: int = 2):
        self.iterator, self.device = iterator, torch.device(device)
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._work, name="cstp-jpeg-prefetch", daemon=True)
        self.thread.start()

    def _put(self, item: Any) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _convert(self, frames: Any, batch: Any) -> tuple[Any, Any, Any]:
        """Frames to the device (decoded); the plans stay on the host (the step copies
        them on its own stream, so nothing of theirs lives on the side stream)."""
        if self.stream is None:
            return frames.to(self.device), batch, None
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            frames = frames.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        return frames, batch, event

    def _work(self) -> None:
        try:
            for frames, batch in self.iterator:
                if not self._put(self._convert(frames, batch)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(exc)
            return
        self._put(self._END)

    def __iter__(self) -> DevicePrefetcher:
        return self

    def __next__(self) -> tuple[Any, Any]:
        item = self.queue.get()
        if item is self._END:
            self.queue.put(self._END)  # stay exhausted
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        frames, batch, event = item
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            frames.record_stream(current)  # made on the side stream, used on this one
        return frames, batch

    def close(self) -> None:
        """Stop the thread (it drops what it holds) and wait for it."""
        self.stopping.set()
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self.thread.join(timeout=10.0)
