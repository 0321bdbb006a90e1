"""Geometry of the device-side augmentation: one affine map per clip, one ``grid_sample``.

:func:`box_theta` composes, per clip, the crop box, the resize to S×S, the horizontal
flip, the jitter rotation about the crop centre and (App. A) the quarter turns of the full
frame into one ``affine_grid`` matrix; :func:`sample` applies all of them to a batch of
uint8 frames in a single bilinear ``grid_sample`` (zero padding outside the frame). See
:mod:`cstp_cli.augment` for the conventions (METHOD §2.4, App. A).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["box_theta", "sample"]




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
    # normalised output coords u ∈ [−1, 1] → pixels: X = (u + 1)·S/2; pixels → normalised input:
    # rows 0-1 of to_unit @ m @ to_pixels, with to_pixels = [[a, 0, a], [0, a, a], [0, 0, 1]]
    # (a = S/2) and to_unit = [[2/W, 0, −1], [0, 2/H, −1], [0, 0, 1]], written out with Python
    # scalars (a host→device copy of a matrix, or a scalar fill, would sync on CUDA).
    a = s / 2
    x = torch.stack([a * m[..., 0], a * m[..., 1], a * (m[..., 0] + m[..., 1]) + m[..., 2]], dim=-1)
    return torch.stack([x[:, 0] * (2 / width) - x[:, 2], x[:, 1] * (2 / height) - x[:, 2]], dim=1)


def _channels_first(frames: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 ``[N, T, H, W, 3]`` → ``dtype[N, 3·T, H, W]`` (channel-major), one copy kernel."""
    n, t, h, w, c = frames.shape
    out = torch.empty((n, c, t, h, w), dtype=dtype, device=frames.device)
    out.copy_(frames.permute(0, 4, 1, 2, 3))
    return out.view(n, c * t, h, w)


def sample(frames: torch.Tensor, theta: torch.Tensor, out_size: int, dtype: torch.dtype) -> torch.Tensor:
    """One batched bilinear ``grid_sample``: uint8 ``[N, T, H, W, 3]`` → ``dtype[N, 3, T, S, S]`` in [0, 1].

    Sampling runs in float32 whatever ``dtype`` is: a bfloat16 grid would misplace samples by
    up to ≈0.2 px on a 171-px frame.
    """
    n, t = frames.shape[:2]
    src = _channels_first(frames, torch.float32)
    grid = F.affine_grid(theta.to(torch.float32), [n, 1, out_size, out_size], align_corners=False)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.view(n, 3, t, out_size, out_size).div_(255.0).clamp_(0.0, 1.0).to(dtype)


