"""The photometric block of METHOD §2.4 on clips ``[N, 3, T, S, S]`` in [0, 1], batched.

Colour jitter in each clip's recorded order (brightness, contrast, saturation, hue with
torchvision's functional semantics), grayscale and Gaussian blur, one draw per clip shared
by its T frames; checked against torchvision's per-frame reference in the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["photometric_block", "blur_radius", "luma", "LUMA", "BRIGHTNESS", "CONTRAST", "SATURATION", "HUE"]

#: ITU-R 601 luma weights, as torchvision's ``rgb_to_grayscale``.
LUMA = (0.2989, 0.587, 0.114)
#: Index of each colour-jitter operation in ``photometric["order"]`` (torchvision's ColorJitter).
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3




def _per_sample(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """``[N]`` → ``[N, 1, ...]`` with ``ndim`` dims, for broadcasting over clips."""
    return v.reshape(v.shape[0], *([1] * (ndim - 1)))


def luma(x: torch.Tensor) -> torch.Tensor:
    """Luma ``[N, 1, T, S, S]`` of clips ``[N, 3, T, S, S]`` (torchvision's ``rgb_to_grayscale``)."""
    r, g, b = x.unbind(1)
    return (r * LUMA[0] + g * LUMA[1] + b * LUMA[2]).unsqueeze(1)


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
    y = luma(x)
    ref = is_con * y.mean(dim=(-2, -1), keepdim=True) + is_sat * y
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


def _device_indices(masks: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """``int64`` indices of each host ``bool[N]`` mask on ``device`` (None for an empty mask),
    moved as one pinned asynchronous copy when ``device`` is CUDA (no host sync)."""
    found = [m.nonzero().flatten() for m in masks]
    sizes = [int(i.numel()) for i in found]
    packed = torch.cat(found)
    if torch.device(device).type == "cuda":
        packed = packed.pin_memory().to(device, non_blocking=True)
    parts = packed.split(sizes)
    return [part if size else None for part, size in zip(parts, sizes)]


class _HostFlags:
    """What the photometric block must run, read on the host.

    From ``host`` (the CPU copy of the parameters, :attr:`PlanBatch.host_photometric`) when
    given — then a CUDA batch needs no device→host sync at all — else with ONE device→host
    copy of ``[N, 8]`` numbers. The clip indices of hue and blur go to the device as one
    pinned, asynchronous copy. Lets the block skip absent operations and run hue and blur on
    the selected clips only.
    """

    def __init__(
        self, photometric: dict[str, torch.Tensor], n: int, out_size: int, device: torch.device,
        host: dict[str, torch.Tensor] | None = None,
    ):
        source, at = (host, torch.device("cpu")) if host is not None else (photometric, device)
        cols = [_flag(source, k, n, at).double().unsqueeze(1) for k in ("jitter", "gray", "blur")]
        order = source.get("order")
        zeros = torch.zeros(n, 4, dtype=torch.float64, device=at)
        cols.append(zeros if order is None else order.reshape(n, 4).double())
        sigma = source.get("sigma")
        cols.append(zeros[:, :1] + 1.0 if sigma is None else sigma.reshape(n, 1).double())
        flags = torch.cat(cols, dim=1).cpu()
        jitter, gray, blur = flags[:, 0] > 0, flags[:, 1] > 0, flags[:, 2] > 0
        order_h, sigma_h = flags[:, 3:7].long(), flags[:, 7]

        self.jitter = bool(jitter.any())
        self.blend_at = [bool((jitter & (order_h[:, p] <= SATURATION)).any()) for p in range(4)]
        *self.hue_at, self.blur = _device_indices([jitter & (order_h[:, p] == HUE) for p in range(4)] + [blur], device)
        self.gray = bool(gray.any())
        self.blur_big = int(blur_radius(sigma_h[blur], out_size).max()) if self.blur is not None else 0


def photometric_block(
    x: torch.Tensor, photometric: dict[str, torch.Tensor], inplace: bool = False, host: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """The photometric block (METHOD §2.4) on clips ``[N, 3, T, S, S]`` in [0, 1].

    ``photometric`` holds ``[N]`` (``order``: ``[N, 4]``) tensors with the keys documented on
    :class:`~cstp_cli.api.PairPlan`; missing flags mean "off". Order: colour jitter, grayscale
    (3 channels), blur. One draw per clip, shared by its frames; contrast uses each frame's
    own mean luma, as torchvision applied frame by frame. ``inplace=True`` lets hue and blur
    write their clips into ``x`` itself (saves a copy when ``x`` is a temporary).
    """
    n, dev = x.shape[0], x.device
    plan = _HostFlags(photometric, n, x.shape[-1], dev, host=host)
    if not inplace and (plan.blur is not None or any(sel is not None for sel in plan.hue_at)):
        x = x.clone()
    if plan.jitter:
        params = {k: photometric[k].reshape(n).to(x.dtype) for k in ("brightness", "contrast", "saturation")}
        params["hue"] = photometric["hue"].reshape(n)
        jitter = _flag(photometric, "jitter", n, dev)
        x = _color_jitter(x, params, photometric["order"].reshape(n, 4), jitter, plan)
    if plan.gray:
        gray = _flag(photometric, "gray", n, dev)
        x = torch.where(_per_sample(gray, x.ndim), luma(x).expand_as(x), x)
    if plan.blur is not None:
        sigma = photometric["sigma"].reshape(n).index_select(0, plan.blur)
        x = x.index_copy_(0, plan.blur, _gaussian_blur(x.index_select(0, plan.blur), sigma, plan.blur_big))
    return x


