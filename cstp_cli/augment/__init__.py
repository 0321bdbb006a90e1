"""Batched, device-side application of clip-pair plans (METHOD §2 step 4, App. A; DESIGN "Data flow").

A :class:`~cstp_cli.api.PlanBatch` says *what* to do to each clip; this module does the
per-pixel work for the whole batch at once, on CPU or CUDA, in a fixed order:

1. **Geometry** — one ``affine_grid`` + ``grid_sample`` (bilinear, ``align_corners=False``,
   zero padding) for all B×2 clips, their T frames carried as channels: crop the box
   ``(x, y, w, h)`` and resize it to S×S, flip horizontally, rotate by the jitter angle
   about the crop centre; in the authors' sampling (``extras["sampling.rot_first"]``,
   METHOD App. A) the quarter turns ``rot90`` are applied to the full frame *before*
   cropping, folded into the same affine map.
2. **Photometric block** (METHOD §2.4) — one draw per clip, shared by its T frames: colour
   jitter in the recorded order, grayscale, Gaussian blur, with torchvision's functional
   semantics applied frame by frame.
3. **Task transforms** — each task's ``device_transform`` in the order given (``rot``'s
   ``rot90`` after crop and resize lives in its plugin, not here).
4. **Normalisation** ``x·2 − 1`` for x in [0, 1] (i.e. ``u8/255·2 − 1``, METHOD §2.4).

Choices worth knowing:

* Resampling is plain bilinear, like torchvision's ``resized_crop(..., antialias=False)``:
  no low-pass before downscaling. On the default 171×128 cache a box is shrunk at most
  ≈1.5× to 112 px, where aliasing is negligible; on 341×256 caches (up to ≈3×) it is not.
* Samples are taken from the *frame*, not from an isolated crop: near the box border the
  bilinear taps (and the corners uncovered by the jitter rotation) read the frame pixels
  around the box; zeros appear only outside the frame. A crop-then-resize-then-rotate
  pipeline would instead clamp at the box edge and fill rotated corners with zeros.
* Gaussian blur uses an odd kernel of size ``2·ceil(3σ) + 1`` (capped at ``2S − 1``),
  reflect padding, as torchvision's ``gaussian_blur(img, k, σ)`` with that k.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from cstp_cli.api import PlanBatch
from cstp_cli.augment.geometry import box_theta, sample
from cstp_cli.augment.photometric import photometric_block

__all__ = ["augment_batch", "augment_clips", "center_clips", "normalise", "box_theta", "photometric_block"]


# --------------------------------------------------------------------------- normalisation


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Map pixels to [−1, 1] (METHOD §2.4): ``uint8`` → ``x/255·2 − 1``; float in [0, 1] → ``x·2 − 1``.

    Any shape; uint8 input gives float32, float input keeps its dtype.
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0).mul_(2.0).sub_(1.0)
    return x * 2.0 - 1.0


# --------------------------------------------------------------------------- entry points


def augment_clips(
    frames: torch.Tensor,
    boxes: torch.Tensor,
    frame_wh: tuple[int, int],
    flip: torch.Tensor | None = None,
    photometric: dict[str, torch.Tensor] | None = None,
    rot90_first: torch.Tensor | None = None,
    out_size: int = 112,
    dtype: torch.dtype = torch.float32,
    host_photometric: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Geometry + photometric block for N independent clips; no task transforms, no normalisation.

    Args:
        frames: ``uint8[N, T, H, W, 3]`` on the work device.
        boxes: ``int[N, 4]`` crop boxes ``(x, y, w, h)`` in cache pixels (half-open).
        frame_wh: (W, H) of the frames.
        flip: ``bool[N]`` horizontal flip, or None.
        photometric: ``[N]`` parameters (``"angle"`` degrees, jitter, gray, blur ...), or None.
        rot90_first: ``int[N]`` quarter turns of the full frame before cropping (App. A), or None.
        out_size: S.
        dtype: float type of the photometric work and the result (sampling is float32).
        host_photometric: the same parameters on the CPU, or None: read to decide which
            operations run, so a CUDA batch needs no device→host sync for it.

    Returns:
        ``dtype[N, 3, T, S, S]`` in [0, 1], contiguous.
    """
    photometric = photometric or {}
    n, _, h, w, c = frames.shape
    if frames.dtype != torch.uint8 or c != 3 or (w, h) != tuple(frame_wh):
        raise ValueError(
            f"augment expects uint8 frames [N, T, {frame_wh[1]}, {frame_wh[0]}, 3], "
            f"got {frames.dtype} {tuple(frames.shape)}"
        )
    angle = photometric.get("angle")
    theta = box_theta(
        boxes.reshape(n, 4),
        frame_wh,
        out_size,
        flip=None if flip is None else flip.reshape(n),
        angle=None if angle is None else angle.reshape(n),
        rot90=rot90_first,
    )
    x = sample(frames, theta, out_size, dtype)
    return photometric_block(x, photometric, inplace=True, host=host_photometric)


def augment_batch(
    frames: torch.Tensor,
    batch: PlanBatch,
    tasks: Sequence[Any] = (),
    out_size: int = 112,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Apply a batch of clip-pair plans on the frames' device (METHOD §2.4, App. A).

    Args:
        frames: ``uint8[B, 2, T, H, W, 3]`` (CPU or CUDA), the pairs' frames.
        batch: the :class:`~cstp_cli.api.PlanBatch` of those pairs, on the same device.
        tasks: active :class:`~cstp_cli.api.PretextTask` objects; their ``device_transform``
            runs in this order on ``[B, 2, 3, T, S, S]`` clips in [0, 1], before normalisation.
        out_size: S, the output side.
        generator: unused — every random choice is in the plan, so the result is a pure
            function of the inputs (bitwise reproducible on CPU); accepted for API stability.
        dtype: float type of the photometric work, task transforms and result (float32;
            bfloat16 halves their memory). Sampling itself always runs in float32.

    Returns:
        ``dtype[B, 2, 3, T, S, S]`` normalised to [−1, 1] (``x/255·2 − 1``), contiguous.
    """
    del generator
    if frames.dim() != 6 or frames.shape[1] != 2:
        raise ValueError(f"augment_batch expects frames [B, 2, T, H, W, 3], got {tuple(frames.shape)}")
    bsz, _, t = frames.shape[:3]
    n = bsz * 2
    rot_first = batch.extras.get("sampling.rot_first")
    turns = None
    if rot_first is not None:
        quarter = batch.rot90.reshape(n)
        turns = torch.where(rot_first.reshape(n).bool(), quarter, torch.zeros_like(quarter))
    photometric = {k: v.reshape(n, *v.shape[2:]) for k, v in batch.photometric.items()}
    host = batch.host_photometric
    host = None if host is None else {k: v.reshape(n, *v.shape[2:]) for k, v in host.items()}
    x = augment_clips(
        frames.reshape(n, *frames.shape[2:]),
        batch.boxes.reshape(n, 4),
        batch.frame_wh,
        flip=batch.flip.reshape(n),
        photometric=photometric,
        rot90_first=turns,
        out_size=out_size,
        dtype=dtype,
        host_photometric=host,
    )
    x = x.view(bsz, 2, 3, t, out_size, out_size)
    for task in tasks:
        x = task.device_transform(x, batch)
    return normalise(x).contiguous()


def center_clips(
    frames: torch.Tensor,
    out_size: int = 112,
    crop: int = 112,
    resize_to: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Evaluation clips (METHOD §7): optional resize to ``resize_to`` (W, H), centre crop, resize to S.

    The centre box follows torchvision's ``center_crop`` (offsets ``round((W − crop)/2)``,
    ``round((H − crop)/2)``; zero padding where the crop exceeds the frame). Resize, crop and
    the final resize are one bilinear ``grid_sample`` (no anti-aliasing).

    Args:
        frames: ``uint8[B, T, H, W, 3]``.
        out_size: S; crop: side of the centre crop, in (resized) frame pixels.
        resize_to: (W, H) the frames are resized to before cropping, or None.
        dtype: float type of the result (sampling is float32).
    Returns:
        ``dtype[B, 3, T, S, S]`` normalised to [−1, 1].
    """
    n, _, h, w, _ = frames.shape
    rw, rh = resize_to if resize_to is not None else (w, h)
    left, top = int(round((rw - crop) / 2.0)), int(round((rh - crop) / 2.0))
    boxes = torch.tensor([[left, top, crop, crop]], dtype=torch.float64, device=frames.device).expand(n, 4)
    theta = box_theta(boxes, (rw, rh), out_size)
    x = sample(frames, theta, out_size, dtype)
    return normalise(x).contiguous()
