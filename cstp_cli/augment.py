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
import torch.nn.functional as F

from cstp_cli.api import PlanBatch

__all__ = ["augment_batch", "augment_clips", "center_clips", "normalise", "box_theta", "photometric_block"]

#: ITU-R 601 luma weights, as torchvision's ``rgb_to_grayscale``.
_LUMA = (0.2989, 0.587, 0.114)
#: Index of each colour-jitter operation in ``photometric["order"]`` (torchvision's ColorJitter).
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3


# --------------------------------------------------------------------------- normalisation


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Map pixels to [−1, 1] (METHOD §2.4): ``uint8`` → ``x/255·2 − 1``; float in [0, 1] → ``x·2 − 1``.

    Any shape; uint8 input gives float32, float input keeps its dtype.
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0).mul_(2.0).sub_(1.0)
    return x * 2.0 - 1.0


# --------------------------------------------------------------------------- geometry


def _eye(n: int, device: torch.device) -> torch.Tensor:
    return torch.eye(3, dtype=torch.float64, device=device).expand(n, 3, 3).clone()


def _rotation_about(angle_deg: torch.Tensor, cx: float, cy: float) -> torch.Tensor:
    """``float64[N, 3, 3]``: output → input map of a counter-clockwise rotation by ``angle_deg``.

    Pixel coordinates are continuous (pixel j covers [j, j+1)), y pointing down; the
    forward rotation turns content counter-clockwise as displayed (torchvision's
    ``rotate``), so the inverse map is ``d ↦ [[cos, −sin], [sin, cos]]·d`` about (cx, cy).
    """
    a = torch.deg2rad(angle_deg.to(torch.float64))
    c, s = torch.cos(a), torch.sin(a)
    m = _eye(a.shape[0], a.device)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    m[:, 0, 2] = cx - c * cx + s * cy
    m[:, 1, 2] = cy - s * cx - c * cy
    return m


def _quarter_turns_inverse(k: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``float64[N, 3, 3]``: point in a frame turned ``k`` quarter turns CCW → point in the W×H frame.

    Matches ``torch.rot90(frame, k, dims=(H, W))``. With X, Y in the turned frame:
    k=1: (W − Y, X); k=2: (W − X, H − Y); k=3: (Y, H − X).
    """
    w, h = float(width), float(height)
    table = torch.tensor(
        [
            [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
            [[0, -1, w], [1, 0, 0], [0, 0, 1]],
            [[-1, 0, w], [0, -1, h], [0, 0, 1]],
            [[0, 1, 0], [-1, 0, h], [0, 0, 1]],
        ],
        dtype=torch.float64,
        device=k.device,
    )
    return table[k.long().remainder(4)]


def box_theta(
    boxes: torch.Tensor,
    frame_wh: tuple[int, int],
    out_size: int,
    flip: torch.Tensor | None = None,
    angle: torch.Tensor | None = None,
    rot90: torch.Tensor | None = None,
) -> torch.Tensor:
    """``float64[N, 2, 3]`` ``affine_grid`` matrices (``align_corners=False``) for N clips.

    Output pixel → input frame, composed as (METHOD §2.4, App. A)
    ``turn⁻¹ ∘ box-scale ∘ flip⁻¹ ∘ rotate⁻¹``: the S×S output is the box ``(x, y, w, h)``
    (``int[N, 4]``, in the coordinates of the frame turned ``rot90`` quarter turns CCW, or
    of the frame itself when ``rot90`` is None) resized to S×S, flipped horizontally where
    ``flip`` (``bool[N]``), then rotated CCW by ``angle`` degrees (``float[N]``) about its centre.
    """
    n, dev = boxes.shape[0], boxes.device
    width, height = frame_wh
    s = float(out_size)
    b = boxes.to(torch.float64)
    m = _eye(n, dev)
    if angle is not None:
        m = _rotation_about(angle, s / 2, s / 2) @ m
    if flip is not None:
        f = _eye(n, dev)
        sign = 1.0 - 2.0 * flip.to(torch.float64)
        f[:, 0, 0] = sign
        f[:, 0, 2] = flip.to(torch.float64) * s
        m = f @ m
    scale = _eye(n, dev)
    scale[:, 0, 0], scale[:, 0, 2] = b[:, 2] / s, b[:, 0]
    scale[:, 1, 1], scale[:, 1, 2] = b[:, 3] / s, b[:, 1]
    m = scale @ m
    if rot90 is not None:
        m = _quarter_turns_inverse(rot90, width, height) @ m
    # normalised output coords u ∈ [−1, 1] → pixels: X = (u + 1)·S/2; pixels → normalised input.
    to_pixels = torch.tensor([[s / 2, 0, s / 2], [0, s / 2, s / 2], [0, 0, 1]], dtype=torch.float64, device=dev)
    to_unit = torch.tensor(
        [[2 / width, 0, -1], [0, 2 / height, -1], [0, 0, 1]], dtype=torch.float64, device=dev
    )
    return (to_unit @ m @ to_pixels)[:, :2, :]


def _channels_first(frames: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 ``[N, T, H, W, 3]`` → ``dtype[N, 3·T, H, W]`` (channel-major), one copy kernel."""
    n, t, h, w, c = frames.shape
    out = torch.empty((n, c, t, h, w), dtype=dtype, device=frames.device)
    out.copy_(frames.permute(0, 4, 1, 2, 3))
    return out.view(n, c * t, h, w)


def _sample(frames: torch.Tensor, theta: torch.Tensor, out_size: int, dtype: torch.dtype) -> torch.Tensor:
    """One batched bilinear ``grid_sample``: uint8 ``[N, T, H, W, 3]`` → ``dtype[N, 3, T, S, S]`` in [0, 1].

    Sampling runs in float32 whatever ``dtype`` is: a bfloat16 grid would misplace samples by
    up to ≈0.2 px on a 171-px frame.
    """
    n, t = frames.shape[:2]
    src = _channels_first(frames, torch.float32)
    grid = F.affine_grid(theta.to(torch.float32), [n, 1, out_size, out_size], align_corners=False)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.view(n, 3, t, out_size, out_size).div_(255.0).clamp_(0.0, 1.0).to(dtype)


# --------------------------------------------------------------------------- photometric


def _per_sample(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """``[N]`` → ``[N, 1, ...]`` with ``ndim`` dims, for broadcasting over clips."""
    return v.reshape(v.shape[0], *([1] * (ndim - 1)))


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma ``[N, 1, T, S, S]`` of clips ``[N, 3, T, S, S]`` (torchvision's ``rgb_to_grayscale``)."""
    r, g, b = x.unbind(1)
    return (r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2]).unsqueeze(1)


def _rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue (turns, [0, 1)), saturation, value of clips ``[N, 3, ...]`` in [0, 1]; each ``[N, ...]``."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    flat = delta == 0
    sat = delta / torch.where(flat, torch.ones_like(maxc), maxc)
    d = torch.where(flat, torch.ones_like(delta), delta)
    hue = torch.where(
        maxc == r,
        (g - b) / d,
        torch.where(maxc == g, (b - r) / d + 2.0, (r - g) / d + 4.0),
    )
    hue = torch.where(flat, torch.zeros_like(hue), hue)
    return torch.remainder(hue / 6.0, 1.0), sat, maxc


def _hsv_to_rgb(hue: torch.Tensor, sat: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    """Clips ``[N, 3, ...]`` from hue (turns), saturation, value, each ``[N, ...]``.

    Channel n ∈ (5, 3, 1) for (R, G, B): ``v − v·s·clamp(min(k, 4 − k), 0, 1)`` with
    ``k = (n + 6h) mod 6`` — the sector formula written without branches.
    """
    h6 = hue * 6.0
    chans = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(h6 + n, 6.0)
        ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
        chans.append((val - val * sat * ramp).clamp(0.0, 1.0))
    return torch.stack(chans, dim=1)


def _adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shift hue of clips ``[n, 3, T, S, S]`` by ``shift`` ``[n]`` turns (torchvision ``adjust_hue``), in float32."""
    x32 = x.float()
    hue, sat, val = _rgb_to_hsv(x32)
    hue = torch.remainder(hue + _per_sample(shift.float(), hue.ndim), 1.0)
    return _hsv_to_rgb(hue, sat, val).to(x.dtype)


def _blend_step(x: torch.Tensor, op: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Apply brightness / contrast / saturation where ``op`` (``int[N]``, −1 = none) selects them.

    torchvision's blends ``clamp(f·x + (1 − f)·ref, 0, 1)`` with ref = 0 (brightness), the
    per-frame mean luma (contrast) or the luma (saturation); other clips get f = 1 (exact identity).
    """
    one = torch.ones_like(params["brightness"])
    f = torch.where(op == BRIGHTNESS, params["brightness"], one)
    f = torch.where(op == CONTRAST, params["contrast"], f)
    f = torch.where(op == SATURATION, params["saturation"], f)
    f = _per_sample(f, x.ndim)
    is_con = _per_sample((op == CONTRAST).to(x.dtype), x.ndim)
    is_sat = _per_sample((op == SATURATION).to(x.dtype), x.ndim)
    luma = _gray(x)
    ref = is_con * luma.mean(dim=(-2, -1), keepdim=True) + is_sat * luma
    return (x * f + (1.0 - f) * ref).clamp_(0.0, 1.0)


def _color_jitter(
    x: torch.Tensor, params: dict[str, torch.Tensor], order: torch.Tensor, active: torch.Tensor, plan: "_HostFlags"
) -> torch.Tensor:
    """Colour jitter of clips ``[N, 3, T, S, S]`` in each clip's recorded ``order`` (``int[N, 4]``).

    METHOD §2.4: brightness, contrast, saturation factors and hue shift (turns), applied
    where ``active`` (``bool[N]``). One loop over the 4 positions; the blends run on the
    whole batch (identity where not selected), hue on the selected clips only.
    """
    order = order.long()
    for pos in range(4):
        op = torch.where(active, order[:, pos], torch.full_like(order[:, pos], -1))
        if plan.blend_at[pos]:
            x = _blend_step(x, op, params)
        sel = plan.hue_at[pos]
        if sel is not None:
            x = x.index_copy_(0, sel, _adjust_hue(x.index_select(0, sel), params["hue"].index_select(0, sel)))
    return x


def blur_radius(sigma: torch.Tensor, out_size: int) -> torch.Tensor:
    """Kernel half-width ``int64[N]``: ``ceil(3σ)``, capped at ``S − 1`` (kernel ``2r + 1``, reflect pad)."""
    return torch.ceil(3.0 * sigma.double()).long().clamp(1, out_size - 1)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, big: int) -> torch.Tensor:
    """Separable Gaussian blur of clips ``[n, 3, T, S, S]`` with per-clip ``sigma`` ``[n]``.

    Each clip's kernel has ``2·r + 1`` taps (:func:`blur_radius`) zero-padded to ``2·big + 1``
    (``big`` ≥ every r); reflect padding by ``big`` leaves every clip's own taps unchanged.
    """
    n, c, t, s, _ = x.shape
    radius = blur_radius(sigma, s)
    taps = torch.arange(-big, big + 1, device=x.device, dtype=torch.float64)
    sig = sigma.double().unsqueeze(1)
    kernel = torch.exp(-0.5 * (taps / sig) ** 2) * (taps.abs() <= radius.unsqueeze(1))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).to(x.dtype)
    weight = kernel.repeat_interleave(c * t, dim=0)  # [n·3·T, K]
    planes = x.reshape(1, n * c * t, s, s)
    planes = F.pad(planes, (big, big, big, big), mode="reflect")
    planes = F.conv2d(planes, weight.view(-1, 1, 1, 2 * big + 1), groups=n * c * t)
    planes = F.conv2d(planes, weight.view(-1, 1, 2 * big + 1, 1), groups=n * c * t)
    return planes.view(n, c, t, s, s)


def _flag(photometric: dict[str, torch.Tensor], key: str, n: int, device: torch.device) -> torch.Tensor:
    value = photometric.get(key)
    if value is None:
        return torch.zeros(n, dtype=torch.bool, device=device)
    return value.reshape(n).to(torch.bool)


class _HostFlags:
    """What the photometric block must run, read with ONE device→host copy of ``[N, 8]`` numbers.

    Lets the block skip absent operations and run hue and blur on the selected clips only,
    without a synchronisation per operation on CUDA.
    """

    def __init__(self, photometric: dict[str, torch.Tensor], n: int, out_size: int, device: torch.device):
        cols = [_flag(photometric, k, n, device).double().unsqueeze(1) for k in ("jitter", "gray", "blur")]
        order = photometric.get("order")
        zeros = torch.zeros(n, 4, dtype=torch.float64, device=device)
        cols.append(zeros if order is None else order.reshape(n, 4).double())
        sigma = photometric.get("sigma")
        cols.append(zeros[:, :1] + 1.0 if sigma is None else sigma.reshape(n, 1).double())
        host = torch.cat(cols, dim=1).cpu()
        jitter, gray, blur = host[:, 0] > 0, host[:, 1] > 0, host[:, 2] > 0
        order_h, sigma_h = host[:, 3:7].long(), host[:, 7]

        def index(mask: torch.Tensor) -> torch.Tensor | None:
            return mask.nonzero().flatten().to(device) if bool(mask.any()) else None

        self.jitter = bool(jitter.any())
        self.blend_at = [bool((jitter & (order_h[:, p] <= SATURATION)).any()) for p in range(4)]
        self.hue_at = [index(jitter & (order_h[:, p] == HUE)) for p in range(4)]
        self.gray = bool(gray.any())
        self.blur = index(blur)
        self.blur_big = int(blur_radius(sigma_h[blur], out_size).max()) if self.blur is not None else 0


def photometric_block(x: torch.Tensor, photometric: dict[str, torch.Tensor], inplace: bool = False) -> torch.Tensor:
    """The photometric block (METHOD §2.4) on clips ``[N, 3, T, S, S]`` in [0, 1].

    ``photometric`` holds ``[N]`` (``order``: ``[N, 4]``) tensors with the keys documented on
    :class:`~cstp_cli.api.PairPlan`; missing flags mean "off". Order: colour jitter, grayscale
    (3 channels), blur. One draw per clip, shared by its frames; contrast uses each frame's
    own mean luma, as torchvision applied frame by frame. ``inplace=True`` lets hue and blur
    write their clips into ``x`` itself (saves a copy when ``x`` is a temporary).
    """
    n, dev = x.shape[0], x.device
    plan = _HostFlags(photometric, n, x.shape[-1], dev)
    if not inplace and (plan.blur is not None or any(sel is not None for sel in plan.hue_at)):
        x = x.clone()
    if plan.jitter:
        params = {k: photometric[k].reshape(n).to(x.dtype) for k in ("brightness", "contrast", "saturation")}
        params["hue"] = photometric["hue"].reshape(n)
        jitter = _flag(photometric, "jitter", n, dev)
        x = _color_jitter(x, params, photometric["order"].reshape(n, 4), jitter, plan)
    if plan.gray:
        gray = _flag(photometric, "gray", n, dev)
        x = torch.where(_per_sample(gray, x.ndim), _gray(x).expand_as(x), x)
    if plan.blur is not None:
        sigma = photometric["sigma"].reshape(n).index_select(0, plan.blur)
        x = x.index_copy_(0, plan.blur, _gaussian_blur(x.index_select(0, plan.blur), sigma, plan.blur_big))
    return x


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
    x = _sample(frames, theta, out_size, dtype)
    return photometric_block(x, photometric, inplace=True)


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
    x = augment_clips(
        frames.reshape(n, *frames.shape[2:]),
        batch.boxes.reshape(n, 4),
        batch.frame_wh,
        flip=batch.flip.reshape(n),
        photometric=photometric,
        rot90_first=turns,
        out_size=out_size,
        dtype=dtype,
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
    x = _sample(frames, theta, out_size, dtype)
    return normalise(x).contiguous()
