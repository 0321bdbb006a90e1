"""Integer plan geometry shared by the core sampler (METHOD §0, §2) and App. A.

Boxes are ``(x, y, w, h)`` in integer cache pixels, half-open; frames are 0-indexed. Every
function here decides pixels and frames with integer arithmetic, except the one documented
float-to-integer step of the random-resized crop (METHOD §2.3) and the float truncations
App. A reproduces on purpose (``reference_*``).

:mod:`cstp_cli.api` re-exports the helpers a pretext task needs (``delta_steps``,
``draw_rrc_size``, ``rrc_box``, ``corner_shift``, ``min_overlap_width``, ``overlap_height``,
``inside``, ``intersection_area``, ``clip_idx``, ``looped_idx``, ``candidate_strings``) for
plugins (the built-in ``stor`` task uses them), so this module must not import the API.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

#: Random-resized-crop area range (fraction of W·H) and aspect range (METHOD §2.3).
RRC_SCALE = (0.2, 1.0)
RRC_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
RRC_TRIES = 10
UNBOUNDED_TRIES = 10_000


def delta_steps(k: int, n: int, T: int) -> int:
    """Temporal offset in steps ``δ_k = round_half_up((T−1)·k/n)`` (METHOD §2.2), integer only."""
    return ((T - 1) * k * 2 + n) // (2 * n)


def candidate_strings(n: int) -> list[str]:
    """The overlap rates ``1, (n−1)/n, …, 1/n`` as strings (label k ↔ rate ``1 − k/n``, METHOD §0)."""
    return [str(Fraction(n - k, n)) for k in range(n)]


def min_overlap_width(w: int, m: int, n: int) -> int:
    """Smallest overlap width ``ceil(m·w/n)`` of a ``w``-wide box at rate m/n (METHOD §2.3), integer only."""
    return -(-m * w // n)


def overlap_height(w: int, h: int, m: int, n: int, sw: int) -> int:
    """Overlap height ``sh = (m·w·h) // (n·sw)`` for overlap width ``sw`` at rate m/n (METHOD §2.3).

    Then ``m·w·h/n − sw < sw·sh ≤ m·w·h/n``. Works on ints and on int64 arrays of ``sw``.
    """
    return (m * w * h) // (n * sw)


def draw_rrc_size(W: int, H: int, rng: np.random.Generator) -> tuple[int, int]:
    """One random-resized-crop size draw ``(w, h)`` (may not fit the frame; METHOD §2.3).

    Area ``U[0.2, 1]·W·H``, aspect log-uniform in ``[3/4, 4/3]``; ``w = round(sqrt(area·aspect))``,
    ``h = round(sqrt(area/aspect))`` (the one float-to-integer step); swapped with p = ½.
    The three uniforms come from one ``rng.random(3)`` call.
    """
    u_area, u_aspect, u_swap = rng.random(3).tolist()
    area = (RRC_SCALE[0] + (RRC_SCALE[1] - RRC_SCALE[0]) * u_area) * (W * H)
    aspect = math.exp(RRC_LOG_RATIO[0] + (RRC_LOG_RATIO[1] - RRC_LOG_RATIO[0]) * u_aspect)
    w = int(round(math.sqrt(area * aspect)))
    h = int(round(math.sqrt(area / aspect)))
    return (h, w) if u_swap < 0.5 else (w, h)


def rrc_box(W: int, H: int, rng: np.random.Generator, tries: int | None = RRC_TRIES) -> tuple[int, int, int, int]:
    """A random-resized-crop box inside a ``W×H`` frame (METHOD §2.3, box 1).

    At most ``tries`` size draws; the first that fits is placed uniformly (one integer draw
    over the ``(W−w+1)·(H−h+1)`` positions). When all fail, the largest centred box of
    aspect 1. ``tries=None`` retries until a draw fits (App. A: no fallback), giving up
    only after :data:`UNBOUNDED_TRIES` draws (frames no crop of the scale range fits).
    """
    attempt, limit = 0, UNBOUNDED_TRIES if tries is None else tries
    while attempt < limit:
        attempt += 1
        w, h = draw_rrc_size(W, H, rng)
        if 1 <= w <= W and 1 <= h <= H:
            pos = int(rng.integers(0, (W - w + 1) * (H - h + 1)))
            return pos % (W - w + 1), pos // (W - w + 1), w, h
    side = min(W, H)
    return (W - side) // 2, (H - side) // 2, side, side


def corner_shift(corner: int, dx: int, dy: int) -> tuple[int, int]:
    """Offset of box 2 from box 1 so that their overlap is ``corner`` of box 1.

    Corners: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right (y grows downwards).
    """
    sx = -dx if corner in (0, 2) else dx
    sy = -dy if corner in (0, 1) else dy
    return sx, sy


def inside(box: tuple[int, int, int, int] | np.ndarray, W: int, H: int) -> bool:
    """Whether a half-open box lies inside the ``W×H`` frame."""
    x, y, w, h = (int(v) for v in box)
    return x >= 0 and y >= 0 and x + w <= W and y + h <= H and w >= 1 and h >= 1


def intersection_area(a: np.ndarray, b: np.ndarray) -> int:
    """``|A∩B|`` of two half-open boxes, in pixels."""
    ax, ay, aw, ah = (int(v) for v in a)
    bx, by, bw, bh = (int(v) for v in b)
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    return iw * ih


def looped_idx(T: int, N: int, s: int = 1) -> np.ndarray:
    """Frame indices ``int64[2, T]`` of two identical looped clips ``[(s·i) mod N]`` (METHOD §2.1)."""
    clip = (np.arange(T, dtype=np.int64) * s) % max(N, 1)
    return np.stack([clip, clip])


def clip_idx(starts: tuple[int, int], s: int, T: int) -> np.ndarray:
    """Frame indices ``int64[2, T]``: clip c is ``start_c + s·[0..T−1]``."""
    steps = np.arange(T, dtype=np.int64) * s
    return np.stack([starts[0] + steps, starts[1] + steps]).astype(np.int64)


def measure(idx: np.ndarray, boxes: np.ndarray) -> dict[str, float]:
    """Exact measured overlaps of a plan (``pairs.jsonl``'s ``measured``; METHOD §2).

    ``spatial`` = ``|B1∩B2| / |B1|``; ``shared_frames`` = positions of clip 1 whose frame is
    also in clip 2; ``temporal`` = the fraction of clip 1's time span ``[a, a+span]`` covered
    by clip 2's (1 for identical clips), which is ``(T−1−δ_k)/(T−1)`` for STOR plans.
    """
    b1, b2 = boxes[0], boxes[1]
    area1 = int(b1[2]) * int(b1[3])
    spatial = intersection_area(b1, b2) / area1 if area1 > 0 else 0.0
    in_clip2 = set(np.asarray(idx[1]).tolist())
    shared = sum(v in in_clip2 for v in np.asarray(idx[0]).tolist())
    span = int(idx[0, -1] - idx[0, 0])
    if np.array_equal(idx[0], idx[1]) or span <= 0:
        temporal = 1.0 if np.array_equal(idx[0], idx[1]) else 0.0
    else:
        d = abs(int(idx[1, 0] - idx[0, 0]))
        temporal = max(0, span - d) / span
    return {"spatial": float(spatial), "temporal": float(temporal), "shared_frames": shared}


# ----------------------------------------------------------------------- App. A (reference)


def reference_pace_index(N: int, T: int) -> int:
    """Largest j ≤ 3 with ``(T−1)·2^j ≤ N−1``: App. A's ``min(3, floor(log2(N/(T−1))))``.

    Integer form; it differs from the float formula only when ``N = (T−1)·2^j`` exactly,
    where the authors' window would run one frame past the video.
    """
    j = 0
    while j < 3 and (T - 1) * 2 ** (j + 1) <= N - 1:
        j += 1
    return j


def reference_temporal(N: int, T: int, s: int, n: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """App. A temporal step: ``(start1, start2, label)``.

    Start 1 drawn once; label and direction redrawn together until clip 2 fits; offset
    ``int((1 − r)·span)`` with the float ``r = (n−k)/n`` (so "4/5" is 13/15 at pace 1, T = 16).
    """
    span = (T - 1) * s
    a = int(rng.integers(0, N - span))
    while True:
        k = int(rng.integers(0, n))
        r = (n - k) / n
        off = int((1 - r) * span)
        b = a + off if rng.random() < 0.5 else a - off
        if 0 <= b <= N - 1 - span:
            return a, b, k


def reference_spatial(W: int, H: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """App. A spatial step: ``(boxes int64[2, 4], label)``.

    Box 1: random-resized crop with no centre fallback. Clip 2: label, ``sw = randint(int(r·w), w)``
    (inclusive), ``sh = int(r·w·h/sw)`` (at most h) and corner redrawn together until box 2 fits.
    """
    x, y, w, h = rrc_box(W, H, rng, tries=None)
    while True:
        k = int(rng.integers(0, n))
        r = (n - k) / n
        sw = int(rng.integers(max(1, int(r * w)), w + 1))
        sh = min(h, int(r * w * h / sw))
        corner = int(rng.integers(0, 4))
        sx, sy = corner_shift(corner, w - sw, h - sh)
        box2 = (x + sx, y + sy, w, h)
        if inside(box2, W, H):
            return np.array([[x, y, w, h], box2], dtype=np.int64), k
