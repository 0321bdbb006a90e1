"""Frame codecs of a cache (issue 14): ``raw`` uint8 frames or one JPEG per frame.

A ``jpeg`` cache stores every frame as a baseline JPEG (PIL/libjpeg-turbo, 4:4:4 chroma, so
no colour is subsampled away: at quality 90 and 171×128 this measured ≈ 38 dB PSNR vs the raw
frame where 4:2:0 gave ≈ 34 dB, for ≈ 1/6 of the raw bytes; ``bench/data_pipeline.py``).
Frames are encoded in the build's decoder processes and decoded

* on the CPU, in whichever process reads (the DataLoader workers), with
  :func:`torchvision.io.decode_jpeg` on a list of frames (measured faster than PIL:
  ≈ 0.18 vs 0.26 ms a frame at 171×128 on one core), PIL where torchvision cannot;
* on CUDA, batched on the device (:func:`decode_device`, nvJPEG through
  ``torchvision.io.decode_jpeg(list, device="cuda")``).

No h5py here (the storage is :mod:`cstp_cli.data.cache.jpegstore`); torch and torchvision
are imported on first use, so reading metadata stays light.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cstp_cli.errors import CacheError, UsageError

__all__ = [
    "DEFAULT_JPEG_QUALITY",
    "RAW",
    "Codec",
    "EncodedFrames",
    "decode_cpu",
    "decode_device",
    "device_decode_available",
    "encode_jpeg",
    "parse_codec",
    "psnr",
]

#: Quality of ``--codec jpeg`` without a number.
DEFAULT_JPEG_QUALITY = 90


#: Chroma subsampling of the encoder (PIL's ``subsampling``: 0 = 4:4:4, 2 = 4:2:0).
JPEG_SUBSAMPLING = 0


@dataclass(frozen=True)
class Codec:
    """How a cache stores its frames: ``name`` ``"raw"`` or ``"jpeg"``; ``quality`` 1–100
    (jpeg only, else 0). ``spec`` is the text form (``raw``, ``jpeg:90``)."""

    name: str = "raw"
    quality: int = 0

    @property
    def spec(self) -> str:
        return "raw" if self.name == "raw" else f"{self.name}:{self.quality}"

    @property
    def is_raw(self) -> bool:
        return self.name == "raw"


RAW = Codec()


def parse_codec(text: str | Codec | None) -> Codec:
    """``raw`` | ``jpeg`` | ``jpeg:QUALITY`` (1–100, default :data:`DEFAULT_JPEG_QUALITY`)
    → :class:`Codec`; anything else is a :class:`UsageError` naming what is accepted."""
    if isinstance(text, Codec):
        return text
    spec = (text or "raw").strip().lower()
    m = re.fullmatch(r"(raw|none|jpeg|jpg)(?::(\d+))?", spec)
    if m is None:
        raise UsageError(f"unknown --codec {text!r}; use raw, jpeg or jpeg:QUALITY (1-100, default {DEFAULT_JPEG_QUALITY})")
    name, q = m.group(1), m.group(2)
    if name in ("raw", "none"):
        if q is not None:
            raise UsageError(f"--codec raw takes no quality (got {text!r})")
        return RAW
    quality = DEFAULT_JPEG_QUALITY if q is None else int(q)
    if not 1 <= quality <= 100:
        raise UsageError(f"--codec jpeg quality must be 1-100, got {quality}")
    return Codec("jpeg", quality)


@dataclass
class EncodedFrames:
    """Frames as concatenated JPEG bytes: ``data`` uint8 [total bytes], ``offsets`` int64
    [N+1] (frame k is ``data[offsets[k]:offsets[k+1]]``). ``sq_err`` / ``sq_n``: sum of
    squared errors and number of values of the frames decoded back at encoding (a sample),
    from which ``cache info`` reports the PSNR vs the raw frames."""

    data: np.ndarray
    offsets: np.ndarray
    sq_err: float = 0.0
    sq_n: int = 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.offsets.nbytes)

    def blobs(self) -> list[np.ndarray]:
        o = self.offsets
        return [self.data[o[k] : o[k + 1]] for k in range(len(self))]


def encode_jpeg(frames: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> EncodedFrames:
    """uint8 [N,H,W,3] RGB → :class:`EncodedFrames` (baseline JPEG, 4:4:4, ``quality``)."""
    from PIL import Image

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [N, H, W, 3], got {frames.dtype} {frames.shape}")
    parts: list[bytes] = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(f), "RGB").save(buf, format="JPEG", quality=int(quality), subsampling=JPEG_SUBSAMPLING)
        parts.append(buf.getvalue())
    offsets = np.zeros(len(parts) + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in parts])
    data = np.frombuffer(b"".join(parts), dtype=np.uint8).copy()
    return EncodedFrames(data, offsets)


#: Every this many frames of a video (and its first) is decoded back at build for the PSNR.
PSNR_EVERY = 16


class JpegEncoder:
    """Picklable ``frames → EncodedFrames`` for the build's decoder processes; frames
    ``0, PSNR_EVERY, 2·PSNR_EVERY, …`` are decoded back to measure the error vs raw."""

    def __init__(self, quality: int):
        self.quality = int(quality)

    def __call__(self, frames: np.ndarray) -> EncodedFrames:
        enc = encode_jpeg(frames, self.quality)
        pick = np.arange(0, len(frames), PSNR_EVERY)
        blobs = enc.blobs()
        back = decode_cpu([blobs[i] for i in pick], np.empty((len(pick),) + frames.shape[1:], np.uint8))
        diff = back.astype(np.float64) - frames[pick]
        enc.sq_err, enc.sq_n = float(np.sum(diff * diff)), int(diff.size)
        return enc


def encoder_for(codec: Codec) -> JpegEncoder | None:
    """The worker-side encoder of ``codec`` (None for raw)."""
    return None if codec.is_raw else JpegEncoder(codec.quality)


_TV_CPU: bool | None = None

# torchvision 0.29 announces that its image codecs move to TorchCodec; until cstp depends on
# TorchCodec that notice would repeat in every loader worker, so it is silenced (this one only).
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision", category=DeprecationWarning)


def _writable(b: Any) -> np.ndarray:
    """A blob as a C-contiguous uint8 array torch may wrap (memory-mapped bytes are copied)."""
    a = np.frombuffer(b, np.uint8) if isinstance(b, (bytes, bytearray, memoryview)) else np.asarray(b, np.uint8)
    return a if a.flags.writeable and a.flags.c_contiguous else a.copy()


def _torchvision_cpu() -> bool:
    """True when torchvision can decode JPEG on the CPU here (checked once per process)."""
    global _TV_CPU
    if _TV_CPU is None:
        try:
            import torch
            from torchvision.io import decode_jpeg

            probe = encode_jpeg(np.zeros((1, 8, 8, 3), np.uint8)).data
            decode_jpeg(torch.from_numpy(probe))
            _TV_CPU = True
        except Exception:  # noqa: BLE001 - no torchvision, or built without libjpeg: PIL decodes
            _TV_CPU = False
    return _TV_CPU


def decode_cpu(blobs: Sequence[Any], out: np.ndarray, where: str = "") -> np.ndarray:
    """JPEG blobs (K uint8 arrays or bytes) → ``out`` uint8 [K,H,W,3], filled in place.

    torchvision's batched CPU decoder when it works here, else PIL. A blob that does not
    decode, or decodes to another size, is a :class:`CacheError` naming ``where``."""
    k, h, w = out.shape[0], out.shape[1], out.shape[2]
    if len(blobs) != k:
        raise ValueError(f"{len(blobs)} blobs for {k} output frames")
    if k == 0:
        return out
    try:
        if _torchvision_cpu():
            import torch
            from torchvision.io import ImageReadMode, decode_jpeg

            tensors = [torch.from_numpy(_writable(b)) for b in blobs]
            decoded = decode_jpeg(tensors, mode=ImageReadMode.RGB)
            target = torch.from_numpy(out)
            for i, img in enumerate(decoded):
                if tuple(img.shape) != (3, h, w):
                    raise ValueError(f"a frame decoded to {tuple(img.shape[1:])}, expected {(h, w)}")
                target[i].copy_(img.permute(1, 2, 0))
        else:
            from PIL import Image

            for i, b in enumerate(blobs):
                img = np.asarray(Image.open(io.BytesIO(bytes(b))).convert("RGB"))
                if img.shape != (h, w, 3):
                    raise ValueError(f"a frame decoded to {img.shape[:2]}, expected {(h, w)}")
                out[i] = img
    except (RuntimeError, ValueError, OSError) as exc:
        raise CacheError(f"{where or 'cache'}: a JPEG frame does not decode ({exc}); rebuild the cache with `cstp cache build`") from None
    return out


def decode_device(blobs: Sequence[Any], device: Any, frame_hw: tuple[int, int]) -> Any:
    """K JPEG blobs (CPU uint8 tensors, ideally views of one pinned buffer) → uint8
    [K,H,W,3] on ``device`` (a CUDA device), decoded in one nvJPEG batch
    (``torchvision.io.decode_jpeg(list, device=...)``, which orders its work after the
    current stream and the current stream after it). Raises :class:`CacheError` on a
    frame that does not decode or has another size."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    h, w = frame_hw
    if len(blobs) == 0:
        return torch.empty((0, h, w, 3), dtype=torch.uint8, device=device)
    try:
        decoded = decode_jpeg(list(blobs), mode=ImageReadMode.RGB, device=device)
    except RuntimeError as exc:
        raise CacheError(f"a JPEG frame does not decode on {device} ({exc}); rebuild the cache or set CSTP_JPEG_DECODE=cpu") from None
    for img in decoded:
        if tuple(img.shape) != (3, h, w):
            raise CacheError(f"a JPEG frame decoded to {tuple(img.shape[1:])} on {device}, expected {(h, w)}; rebuild the cache")
    return torch.stack(decoded).permute(0, 2, 3, 1).contiguous()


_DEVICE_OK: dict[str, bool] = {}


def device_decode_available(device: Any) -> bool:
    """True when ``device`` is CUDA and torchvision decodes a probe JPEG on it (cached)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return False
    key = str(device)
    if key not in _DEVICE_OK:
        try:
            probe = torch.from_numpy(encode_jpeg(np.full((1, 8, 8, 3), 128, np.uint8)).data)
            decode_device([probe], device, (8, 8))
            _DEVICE_OK[key] = True
        except Exception:  # noqa: BLE001 - no nvJPEG in this torchvision build
            _DEVICE_OK[key] = False
    return _DEVICE_OK[key]


def psnr_from(sq_err: float, sq_n: int) -> float:
    """PSNR in dB from a sum of squared errors over ``sq_n`` uint8 values (``inf`` at 0 error,
    ``nan`` when nothing was measured)."""
    if sq_n <= 0:
        return float("nan")
    mse = sq_err / sq_n
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of ``decoded`` vs ``reference`` (uint8, same shape;
    peak 255): ``10·log10(255² / MSE)``; ``inf`` when identical."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(decoded, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2)) if a.size else 0.0
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))
