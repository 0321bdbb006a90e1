"""The built-in synthetic action dataset (issue 2, item 6): seeded, deterministic, labelled
H.264 MP4 videos in the UCF-101 layout, rendered with NumPy.

*Why one file of ~600 lines*: it is one deterministic renderer whose parts (motions, scenes,
textures, lighting, writer) share the seeding scheme and constants below; splitting it would
spread the one recipe that ``SYNTH_VERSION`` versions over several modules.

*A fair proxy for STOR* (issue 12 item 4; ``bench/synth_frames.py`` →
``bench/results/synth_frames.md``, 40 train videos at 64×48, luma): texture nearly everywhere
(2.0 % of 8×8 patches flat, std < 2 grey levels), and since v4 the background changes
*appearance* over time, not only position: its mottle (:func:`mottle`) decorrelates over
:data:`MOTTLE_CHANGE` = 16 frames, so the background alone, rendered at one camera position,
differs by 1.6 / 6.1 / 16.2 grey levels between frames 1 / 4 / 13 apart — about as much as
v3's whole frames changed from motion (2.2 / 7.1 / 14.8). Up to v3 the background was a rigid
pattern (that change was 0): a time offset then left only a shift of the frame content, which
looks the same as a shift of the crop box, so once both STOR parts vary in a pair the temporal
label was hidden (``bench/results/stor_diagnosis.md``, rows S–Z: temporal learnt only for
equal boxes). Real footage changes appearance over time (non-rigid motion, lighting,
occlusion); the mottle stands for that, class-independent like the rest of the appearance.

**Classes are motion types** (:data:`CLASS_NAMES`): translate, rotate, circle, zoom in,
zoom out, zig-zag, bounce, pulsate, shake, accelerate. Each motion has a random direction
inside its class — a direction angle θ ~ U[0, 2π) and/or a handedness h = ±1 (p = ½) — so
every class is closed under horizontal flip (θ → π − θ, h → −h) and 90° rotation
(θ → θ + π/2): the flipped or rotated video is again a member of its class
(:func:`trajectory` is written in centred coordinates so that this is exact; tested).

**Appearance is independent of the class**: object shape (ellipse, rectangle, triangle,
cross, diamond — none rotationally invariant, so rotation is visible), colour, texture
(solid, stripes, checker, rings, in object coordinates), background (solid, gradient,
stripes, blotches), size, start position and speed (within each class's range) are drawn
from streams seeded without the class, so no single frame reveals it. Like UCF-101, the
clips of one *group* share a scene (background, shape, colours, texture) and groups never
straddle train and test.

**Learnable pretexts** (v2, tuned on pretext losses and frame statistics only): every rate of
a clip is its class's nominal rate × one speed factor f ∈ [0.8, 1.2] (:data:`SPEED_SPREAD`),
so speed ranges at paces s and 2s never overlap; periods exceed 8 frames (no aliasing at
pace 4); object radius is in a narrow range (:data:`RADIUS_RANGE`) so apparent size reveals
the crop scale. Two class-independent motion cues scale with f too: textured objects' patterns
scroll (:data:`TEXTURE_SCROLL`) and the background's pattern and mottle (:data:`GRAIN`) drift
in a uniform random direction (:data:`BACKGROUND_DRIFT`). The scene is lit from the top (:data:`LIGHT`, background and object shading
in frame coordinates, the same for every class): a canonical "up" for the rotation task
that leaves the motion classes closed under flip and 90° rotation.

**Length**: the default 64 frames make every overlap label feasible at paces 1–4 with
T = 8, n = 5 (METHOD §2: N ≥ s_max·(T − 1 + δ_{n−1}) + 1 = 4·(7 + 6) + 1 = 53), and at
paces 1–2 with T = 16 (2·(15 + 12) + 1 = 55).

Sizes are width × height. Randomness: scene of group g of class c from
``default_rng([seed, 1, c, g])``, motion of clip k from ``default_rng([seed, 2, c, g, k])``,
its background mottle from ``default_rng([seed, 3, c, g, k])`` (only the motion *type* depends
on c), so output does not depend on the worker count.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cstp_cli.errors import DataError

#: Format version of the generated set (bump when rendering changes; v4: the changing mottle).
SYNTH_VERSION = 4
#: Motion types, in label order.
CLASS_NAMES = (
    "Translate",
    "Rotate",
    "Circle",
    "ZoomIn",
    "ZoomOut",
    "ZigZag",
    "Bounce",
    "Pulsate",
    "Shake",
    "Accelerate",
)
SHAPES = ("ellipse", "rectangle", "triangle", "cross", "diamond")
TEXTURES = ("solid", "stripes", "checker", "rings")
BACKGROUNDS = ("solid", "gradient", "stripes", "blotches")

#: Parameters of the default (embedded) dataset: 10 classes × (40 train + 15 test) clips of
#: 64 frames at 64×48, 25 fps, groups of 5 clips. Cached at 64×48 it is ~0.3 GB.
DEFAULT_SYNTH: dict = {
    "classes": 10,
    "train_per_class": 40,
    "test_per_class": 15,
    "frames": 64,
    "size": (64, 48),
    "seed": 0,
    "clips_per_group": 5,
    "fps": 25,
}
_SUPERSAMPLE = 2  # anti-aliasing: render at 2× and average 2×2 blocks
_CHUNK = 16  # frames rendered at once (bounds memory for large sizes)
_CRF = 18


# --------------------------------------------------------------------------- motion


@dataclass
class Motion:
    """Per-frame object state, float64 ``[N]`` each: centre (cx, cy) in pixels relative to
    the frame centre (x right, y down), orientation ``angle`` (radians), ``scale`` (× the
    object's base radius)."""

    cx: np.ndarray
    cy: np.ndarray
    angle: np.ndarray
    scale: np.ndarray
    #: texture scroll (object radii, along the object's own x axis), float64 ``[N]``
    scroll: np.ndarray | None = None
    #: background drift (px, x right / y down), float64 ``[N]`` each
    bx: np.ndarray | None = None
    by: np.ndarray | None = None
    #: the background mottle's grid per frame, float64 ``[N, 6, 8]`` about ½ (:func:`mottle`);
    #: None: the scene's fixed ``grain`` grid
    mottle: np.ndarray | None = None


#: Relative spread of every clip's speed factor f ~ U[1 − SPEED_SPREAD, 1 + SPEED_SPREAD]: all
#: rates of a clip (velocities, angular speeds, 1/periods, zoom rates) are a class's nominal
#: rate × f. Kept well under ⅓ so that the speed ranges at paces s and 2s never overlap
#: (1.2 < 2·0.8): apparent speed identifies the pace (METHOD §2 pace task).
SPEED_SPREAD = 0.2
#: Object base radius as a fraction of min(W, H): a narrow range, so that apparent object
#: size tells the network the random-resized-crop scale and hence the true speed.
RADIUS_RANGE = (0.16, 0.2)
#: Nominal texture scroll speed, object radii per frame (see :func:`sample_motion`).
TEXTURE_SCROLL = 0.05
#: Nominal background drift speed, × min(W, H) per frame (see :func:`sample_motion`).
BACKGROUND_DRIFT = 0.015
#: Frames between independent patterns of the background mottle (v4, :func:`mottle`): the
#: background changes appearance over time, not only position.
MOTTLE_CHANGE = 16


def sample_motion(kind: str, rng: np.random.Generator, frames: int, size: tuple[int, int]) -> dict:
    """Draw the parameters of one clip's motion of type ``kind``.

    Common: ``theta`` (direction, U[0, 2π)), ``h`` (handedness ±1), ``x0``/``y0`` (path
    centre, px from the frame centre), ``alpha0`` (orientation, U[0, 2π)), ``f`` (speed
    factor, U[1 ± :data:`SPEED_SPREAD`]). Speeds are a per-class nominal rate × f, in units of
    L = min(W, H) per frame; periods are ≥ 8.5 frames so that no motion aliases at pace 4
    (≥ 2 samples per period). Translating paths are capped to stay about inside the frame.
    """
    w, h = size
    L = float(min(w, h))
    n = max(frames - 1, 1)
    f = rng.uniform(1 - SPEED_SPREAD, 1 + SPEED_SPREAD)
    p = {
        "theta": rng.uniform(0, 2 * math.pi),
        "h": float(rng.choice([-1.0, 1.0])),
        "x0": rng.uniform(-0.06, 0.06) * w,
        "y0": rng.uniform(-0.06, 0.06) * h,
        "alpha0": rng.uniform(0, 2 * math.pi),
        "phase": rng.uniform(0, 2 * math.pi),
        "f": f,
        # every textured object's pattern scrolls at a class-independent rate × f: a
        # motion cue of the pace in every clip (< ½ stripe period per step at pace 4: no aliasing)
        "scroll_v": f * TEXTURE_SCROLL * float(rng.choice([-1.0, 1.0])),
        # the background pattern drifts at BACKGROUND_DRIFT·L·f px/frame in a uniform random
        # direction: a whole-frame, class-independent motion cue of the pace
        "drift_v": f * BACKGROUND_DRIFT * L,
        "drift_phi": rng.uniform(0, 2 * math.pi),
    }
    if kind == "Translate":
        p["v"] = f * min(0.012 * L, 0.75 * L / n)
    elif kind == "Accelerate":
        p["dist"] = f * 0.7 * L * min(1.0, (n / 63) ** 2)  # from rest; final speed 2·dist/n
    elif kind == "ZigZag":
        p["v"] = f * min(0.006 * L, 0.5 * L / n)
        p["amp"] = rng.uniform(0.1, 0.12) * L
        p["period"] = 16 / f
    elif kind == "Circle":
        p["radius"] = rng.uniform(0.18, 0.22) * L
        p["period"] = 36 / f
    elif kind == "Rotate":
        p["period"] = 36 / f
    elif kind in ("ZoomIn", "ZoomOut"):
        p["rate"] = f * 0.014  # d ln(scale) / frame
    elif kind == "Pulsate":
        p["amp"] = rng.uniform(0.3, 0.36)
        p["period"] = 16 / f
    elif kind == "Bounce":
        p["height"] = rng.uniform(0.25, 0.3) * L
        p["period"] = 20 / f
        p["drift"] = rng.uniform(0.0, 0.004) * L
    elif kind == "Shake":
        p["amp"] = rng.uniform(0.05, 0.06) * L
        p["period"] = 10.5 / f
    else:
        raise ValueError(f"unknown motion type {kind!r}; one of {', '.join(CLASS_NAMES)}")
    return p


def trajectory(kind: str, p: dict, frames: int) -> Motion:
    """The object's state over ``frames`` frames for motion ``kind`` with parameters ``p``
    (from :func:`sample_motion`). Pure function of its inputs."""
    t = np.arange(frames, dtype=np.float64)
    mid = (frames - 1) / 2
    n = max(frames - 1, 1)
    u = np.array([math.cos(p["theta"]), math.sin(p["theta"])])
    perp = np.array([-u[1], u[0]])
    along = np.zeros(frames)  # displacement along u
    across = np.zeros(frames)  # displacement along perp
    angle = np.full(frames, p["alpha0"])
    scale = np.ones(frames)
    scroll = p.get("scroll_v", 0.0) * t
    drift = p.get("drift_v", 0.0) * t
    bx, by = drift * math.cos(p.get("drift_phi", 0.0)), drift * math.sin(p.get("drift_phi", 0.0))
    if kind == "Translate":
        along = p["v"] * (t - mid)
    elif kind == "Accelerate":
        along = p["dist"] * (t / n) ** 2 - p["dist"] / 2
    elif kind == "ZigZag":
        along = p["v"] * (t - mid)
        tri = 2 * np.abs(2 * ((t / p["period"] + p["phase"] / (2 * math.pi)) % 1.0) - 1) - 1
        across = p["h"] * p["amp"] * tri
    elif kind == "Circle":
        phi = p["theta"] + p["h"] * 2 * math.pi * t / p["period"]
        return Motion(p["x0"] + p["radius"] * np.cos(phi), p["y0"] + p["radius"] * np.sin(phi), angle, scale, scroll, bx, by)
    elif kind == "Rotate":
        angle = p["alpha0"] + p["h"] * 2 * math.pi * t / p["period"]
    elif kind == "ZoomIn":  # ln(scale) grows at p["rate"] per frame (for at most 63 frames)
        scale = 0.6 * np.exp(p["rate"] * np.minimum(t, 63))
    elif kind == "ZoomOut":
        scale = 0.6 * np.exp(p["rate"] * (min(n, 63) - np.minimum(t, 63)))
    elif kind == "Pulsate":
        scale = 1 + p["amp"] * np.sin(2 * math.pi * t / p["period"] + p["phase"])
    elif kind == "Bounce":
        f = (t / p["period"] + p["phase"] / (2 * math.pi)) % 1.0
        along = p["height"] * (0.5 - (1 - (2 * f - 1) ** 2))  # u points to the floor
        across = p["h"] * p["drift"] * (t - mid)
    elif kind == "Shake":
        along = p["amp"] * np.sin(2 * math.pi * t / p["period"] + p["phase"])
    else:
        raise ValueError(f"unknown motion type {kind!r}")
    cx = p["x0"] + along * u[0] + across * perp[0]
    cy = p["y0"] + along * u[1] + across * perp[1]
    return Motion(cx, cy, angle, scale, scroll, bx, by)


# --------------------------------------------------------------------------- appearance


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.05, 0.95, size=3)


def _luma(c: np.ndarray) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])


def sample_scene(rng: np.random.Generator) -> dict:
    """A group's scene: background and object look (shape, colours, texture). Drawn
    without the class, so appearance is independent of it."""
    bg = {
        "kind": BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
        "c1": _colour(rng),
        "c2": _colour(rng),
        "angle": rng.uniform(0, 2 * math.pi),
        "period": rng.uniform(0.2, 0.45),
        "grid": rng.uniform(0, 1, size=(4, 5)),
        "grain": rng.uniform(0, 1, size=GRAIN_GRID),  # drifting brightness mottle on every background
    }
    bg_mean = (bg["c1"] + bg["c2"]) / 2 if bg["kind"] != "solid" else bg["c1"]
    for _ in range(50):  # keep the object visible against the background
        c1 = _colour(rng)
        if abs(_luma(c1) - _luma(bg_mean)) > 0.25 or np.abs(c1 - bg_mean).max() > 0.45:
            break
    obj = {
        "shape": SHAPES[rng.integers(len(SHAPES))],
        "texture": TEXTURES[rng.integers(len(TEXTURES))],
        "c1": c1,
        "c2": c1 * rng.uniform(0.35, 0.7),
        "freq": rng.uniform(1.5, 3.5),
    }
    return {"background": bg, "object": obj}


def _shape_mask(shape: str, ux: np.ndarray, uy: np.ndarray) -> np.ndarray:
    ax, ay = np.abs(ux), np.abs(uy)
    if shape == "ellipse":
        return ux**2 + (uy / 0.6) ** 2 <= 1
    if shape == "rectangle":
        return (ax <= 1) & (ay <= 0.6)
    if shape == "triangle":
        return (ux >= -0.7) & (ay <= 0.5 * (1 - ux))
    if shape == "cross":
        return ((ax <= 1) & (ay <= 0.32)) | ((ax <= 0.32) & (ay <= 1))
    if shape == "diamond":
        return ax + ay / 0.6 <= 1
    raise ValueError(shape)


def _texture(kind: str, freq: float, ux: np.ndarray, uy: np.ndarray) -> np.ndarray:
    if kind == "solid":
        return np.ones_like(ux)
    if kind == "stripes":
        return (np.sin(freq * math.pi * ux) > 0).astype(np.float32)
    if kind == "checker":
        # cells centred on the object's axes, so the pattern is mirror-symmetric like the shapes
        return ((np.floor(ux * freq + 0.5) + np.floor(uy * freq + 0.5)) % 2).astype(np.float32)
    if kind == "rings":
        return (np.sin(freq * math.pi * np.sqrt(ux**2 + uy**2)) > 0).astype(np.float32)
    raise ValueError(kind)


def _grid(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Sample coordinates (supersampled pixel centres) relative to the frame centre."""
    w, h = size
    s = _SUPERSAMPLE
    xs = (np.arange(w * s, dtype=np.float32) + 0.5) / s - w / 2
    ys = (np.arange(h * s, dtype=np.float32) + 0.5) / s - h / 2
    return xs, ys


def render_background(
    bg: dict, size: tuple[int, int], shift: tuple[float, float] = (0.0, 0.0), grain: np.ndarray | None = None
) -> np.ndarray:
    """Background, float32 ``[H·s, W·s, 3]`` in [0, 1] (s = supersampling), its pattern
    moved by ``shift`` = (dx, dy) px (the blotch grid wraps around); the light from the top
    stays put. ``grain`` (``[6, 8]`` about ½; default the scene's ``bg["grain"]``) is the
    mottle's grid at this frame (:func:`mottle`)."""
    xs, ys = _grid(size)
    L = float(min(size))
    Yf = np.meshgrid(xs, ys)[1]
    X, Y = np.meshgrid(xs - np.float32(shift[0]), ys - np.float32(shift[1]))
    if bg["kind"] == "solid":
        mix = np.zeros_like(X)
    elif bg["kind"] == "gradient":
        proj = (X * math.cos(bg["angle"]) + Y * math.sin(bg["angle"])) / np.hypot(*size)
        mix = np.clip(proj + 0.5, 0, 1)
    elif bg["kind"] == "stripes":
        proj = (X * math.cos(bg["angle"]) + Y * math.sin(bg["angle"])) / (bg["period"] * L)
        mix = 0.5 + 0.5 * np.sin(2 * math.pi * proj)
    else:  # blotches: a coarse random grid, bilinearly upsampled, periodic beyond its ends
        mix = _periodic_bilinear(bg["grid"], X, Y, xs, ys)
    mix = mix.astype(np.float32)[..., None]
    img = bg["c1"].astype(np.float32) * (1 - mix) + bg["c2"].astype(np.float32) * mix
    grain = 1 + GRAIN * (2 * _periodic_bilinear(bg["grain"] if grain is None else grain, X, Y, xs, ys) - 1)
    return img * (light_ramp(Yf, size[1]) * grain.astype(np.float32))[..., None]


#: Contrast of the drifting, changing mottle on every background: brightness × (1 ± GRAIN).
GRAIN = 0.4
#: Nodes (rows, columns) of the mottle's grid, stretched over the frame.
GRAIN_GRID = (6, 8)


def mottle(rng: np.random.Generator, frames: int, shape: tuple[int, int] = GRAIN_GRID, change: float | None = None) -> np.ndarray:
    """The background mottle's grid per frame, float64 ``[frames, *shape]`` about ½ (v4).

    Independent uniform key grids every ``change`` frames (default :data:`MOTTLE_CHANGE`; the
    first at a random phase), blended by ``cos``/``sin`` of the fraction of the way between two
    keys, so each node keeps a U[0, 1] node's variance about ½ at every frame (values within
    ½ ± 1/√8) while it decorrelates over about ``change`` frames (correlation 0.92 at
    ``change/4``, 0.23 at ``change``): a background whose appearance changes over time like
    foliage, water or moving shadows in real footage, independent of the class (issue 12 item 4).
    """
    t = np.arange(frames, dtype=np.float64) / float(change or MOTTLE_CHANGE) + rng.uniform(0, 1)
    keys = rng.uniform(0, 1, size=(int(t.max(initial=0.0)) + 2, *shape)) - 0.5
    k, u = t.astype(int), (t - np.floor(t))[:, None, None]
    return 0.5 + np.cos(u * math.pi / 2) * keys[k] + np.sin(u * math.pi / 2) * keys[k + 1]


def _periodic_bilinear(grid: np.ndarray, X: np.ndarray, Y: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``grid`` [r, c] bilinearly stretched so its nodes span the frame (first node at the first
    sample, last at the last), continued periodically beyond; sampled at (X, Y)."""
    rows, cols = grid.shape
    gy = np.mod((Y - ys[0]) / max(ys[-1] - ys[0], 1e-6) * (rows - 1), rows)
    gx = np.mod((X - xs[0]) / max(xs[-1] - xs[0], 1e-6) * (cols - 1), cols)
    y0, x0 = np.minimum(gy.astype(int), rows - 1), np.minimum(gx.astype(int), cols - 1)
    fy, fx = gy - y0, gx - x0
    y1, x1 = (y0 + 1) % rows, (x0 + 1) % cols
    return (
        grid[y0, x0] * (1 - fy) * (1 - fx)
        + grid[y1, x0] * fy * (1 - fx)
        + grid[y0, x1] * (1 - fy) * fx
        + grid[y1, x1] * fy * fx
    )


#: Strength of the scene light from the top: brightness × (1 + LIGHT) at the top edge,
#: × (1 − LIGHT) at the bottom. The same for every clip and class, so every frame has a
#: canonical "up" (what makes the rot90 pretext task learnable) while the motion classes stay
#: closed under flip and 90° rotation (a rotated clip keeps its motion type; only the light
#: direction changes).
LIGHT = 0.3


def light_ramp(y: np.ndarray, height: int) -> np.ndarray:
    """Brightness factor float32 (shape of ``y``) at rows ``y`` (px from the frame centre,
    down): 1 + LIGHT at the top edge to 1 − LIGHT at the bottom edge."""
    return (1 - LIGHT * y / (height / 2)).astype(np.float32)


def render(scene: dict, motion: Motion, radius: float, size: tuple[int, int]) -> np.ndarray:
    """Render the clip: uint8 ``[N, H, W, 3]`` RGB. The object (base ``radius`` px) is drawn
    at each frame's state in ``motion`` over the background (drifted by ``motion.bx/by`` and
    with ``motion.mottle``'s grid per frame where they are set), anti-aliased by 2×2
    supersampling. Vectorised over frames (chunks of 16)."""
    w, h = size
    s = _SUPERSAMPLE
    xs, ys = _grid(size)
    static = render_background(scene["background"], size)
    per_frame = motion.bx is not None or motion.mottle is not None
    obj = scene["object"]
    c1, c2 = obj["c1"].astype(np.float32), obj["c2"].astype(np.float32)
    n = motion.cx.shape[0]
    out = np.empty((n, h, w, 3), np.uint8)
    for lo in range(0, n, _CHUNK):
        sl = slice(lo, min(lo + _CHUNK, n))
        cx = motion.cx[sl, None, None].astype(np.float32)
        cy = motion.cy[sl, None, None].astype(np.float32)
        ca = np.cos(motion.angle[sl])[:, None, None].astype(np.float32)
        sa = np.sin(motion.angle[sl])[:, None, None].astype(np.float32)
        r = (radius * motion.scale[sl])[:, None, None].astype(np.float32)
        dx = xs[None, None, :] - cx
        dy = ys[None, :, None] - cy
        ux = (ca * dx + sa * dy) / r
        uy = (-sa * dx + ca * dy) / r
        mask = _shape_mask(obj["shape"], ux, uy).astype(np.float32)[..., None]
        shift = 0.0 if motion.scroll is None else motion.scroll[sl, None, None].astype(np.float32)
        tex = _texture(obj["texture"], obj["freq"], ux - shift, uy)[..., None]
        # lit from the top: the object's upper half (in frame coordinates) is brighter
        shade = np.clip(1 - LIGHT * dy / r, 1 - LIGHT, 1 + LIGHT)[..., None]
        colour = (c2 + (c1 - c2) * tex) * shade
        if per_frame:
            background = np.stack([_background_at(scene["background"], size, motion, i) for i in range(sl.start, sl.stop)])
        else:
            background = static[None]
        img = background * (1 - mask) + colour * mask
        img = sum(img[:, i::s, j::s] for i in range(s) for j in range(s)) * (1.0 / (s * s))
        out[sl] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def _background_at(bg: dict, size: tuple[int, int], motion: Motion, i: int) -> np.ndarray:
    """The background of frame ``i`` of ``motion``: drifted by (bx, by) and with its mottle grid."""
    shift = (0.0, 0.0) if motion.bx is None else (motion.bx[i], motion.by[i])
    return render_background(bg, size, shift, None if motion.mottle is None else motion.mottle[i])


def clip_mottle(seed: int, class_index: int, group: int, clip: int, frames: int) -> np.ndarray:
    """The background mottle grid per frame of clip ``clip`` of group ``group`` of class
    ``class_index`` (:func:`mottle` from its own stream ``[seed, 3, c, g, k]``), float64 ``[frames, 6, 8]``."""
    return mottle(np.random.default_rng([seed, 3, class_index, group, clip]), frames)


def render_clip(seed: int, class_index: int, group: int, clip: int, frames: int, size: tuple[int, int]) -> np.ndarray:
    """The frames uint8 ``[N, H, W, 3]`` of clip ``clip`` of group ``group`` (both 1-based)
    of class ``class_index`` — deterministic in its arguments."""
    scene = sample_scene(np.random.default_rng([seed, 1, class_index, group]))
    rng = np.random.default_rng([seed, 2, class_index, group, clip])
    kind = CLASS_NAMES[class_index]
    radius = rng.uniform(*RADIUS_RANGE) * min(size)
    motion = trajectory(kind, sample_motion(kind, rng, frames, size), frames)
    motion.mottle = clip_mottle(seed, class_index, group, clip, frames)
    return render(scene, motion, radius, size)


# --------------------------------------------------------------------------- dataset


def _group_size(train: int, test: int, cap: int) -> int:
    """Largest d ≤ cap dividing both counts, so train/test counts are whole groups."""
    g = math.gcd(train, test)
    return max(d for d in range(1, max(1, min(cap, g)) + 1) if g % d == 0)


def plan(classes: int, train_per_class: int, test_per_class: int, clips_per_group: int = 5) -> dict:
    """Names and split membership of the set, no pixels.

    Returns ``{"groups": G, "clips": d, "test_groups": {fold: [g, ...]}}``: each class has
    G groups of d clips; fold f's test groups are the f-th block of ``test/d`` groups
    (cyclically), the rest train — groups never straddle train and test.
    """
    d = _group_size(train_per_class, test_per_class, clips_per_group)
    groups = (train_per_class + test_per_class) // d
    per_fold = test_per_class // d
    test = {f: sorted({((f - 1) * per_fold + j) % groups + 1 for j in range(per_fold)}) for f in (1, 2, 3)}
    return {"groups": groups, "clips": d, "test_groups": test}


def video_name(cls: str, group: int, clip: int, groups: int, ext: str = ".mp4") -> str:
    width = max(2, len(str(groups)))
    return f"v_{cls}_g{group:0{width}d}_c{clip:02d}{ext}"


def _validate(classes, train_per_class, test_per_class, frames, size, workers) -> None:
    if not 2 <= classes <= len(CLASS_NAMES):
        raise DataError(f"--classes must be between 2 and {len(CLASS_NAMES)} (motion types), got {classes}")
    if train_per_class < 1 or test_per_class < 1:
        raise DataError("--train-per-class and --test-per-class must be at least 1")
    if frames < 1:
        raise DataError(f"--frames must be at least 1, got {frames}")
    if min(size) < 8:
        raise DataError(f"--size must be at least 8x8, got {size[0]}x{size[1]}")
    if workers < 1:
        raise DataError(f"--workers must be at least 1, got {workers}")


def _write_clip(job) -> str:
    from cstp_cli.data.video import write_video  # noqa: PLC0415

    out, rel, seed, class_index, group, clip, frames, size, fps = job
    write_video(Path(out) / rel, render_clip(seed, class_index, group, clip, frames, size), fps=fps, crf=_CRF)
    return rel


def generate(
    out_dir: str | Path,
    *,
    classes: int = DEFAULT_SYNTH["classes"],
    train_per_class: int = DEFAULT_SYNTH["train_per_class"],
    test_per_class: int = DEFAULT_SYNTH["test_per_class"],
    frames: int = DEFAULT_SYNTH["frames"],
    size: tuple[int, int] = DEFAULT_SYNTH["size"],
    seed: int = DEFAULT_SYNTH["seed"],
    workers: int = 1,
    clips_per_group: int = DEFAULT_SYNTH["clips_per_group"],
    fps: int = DEFAULT_SYNTH["fps"],
) -> Path:
    """Render the synthetic set into ``out_dir`` (UCF-101 layout) and return it.

    Writes ``<Class>/v_<Class>_gXX_cYY.mp4``, ``ucfTrainTestlist/classInd.txt``,
    ``trainlist01..03.txt``, ``testlist01..03.txt`` and ``synth.json`` (the parameters)
    into a temporary sibling folder, then renames it to ``out_dir`` — a killed or
    concurrent run never leaves a half dataset. ``out_dir`` must not exist or be empty.
    """
    out = Path(out_dir).expanduser().absolute()
    size = (int(size[0]), int(size[1]))
    _validate(classes, train_per_class, test_per_class, frames, size, workers)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} already exists and is not an empty folder; choose a new output folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(out)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as exc:
        raise DataError(f"cannot write to {out.parent}: {exc.strerror}; choose a writable output folder") from None
    try:
        layout = plan(classes, train_per_class, test_per_class, clips_per_group)
        jobs = _jobs(tmp, layout, classes, seed, frames, size, fps)
        for name in CLASS_NAMES[:classes]:
            (tmp / name).mkdir()
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                list(pool.map(_write_clip, jobs, chunksize=8))
        else:
            for job in jobs:
                _write_clip(job)
        _write_lists(tmp, layout, classes)
        params = {
            "version": SYNTH_VERSION,
            "classes": classes,
            "train_per_class": train_per_class,
            "test_per_class": test_per_class,
            "frames": frames,
            "size": list(size),
            "seed": seed,
            "clips_per_group": clips_per_group,
            "fps": fps,
            "class_names": list(CLASS_NAMES[:classes]),
            "videos": len(jobs),
        }
        (tmp / "synth.json").write_text(json.dumps(params, indent=1) + "\n")
        try:
            if out.exists():
                out.rmdir()  # an empty folder; a non-empty one was refused above
            os.rename(tmp, out)
        except OSError as exc:
            raise DataError(f"{out} appeared while generating ({exc.strerror}); remove it or choose another folder") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _jobs(tmp, layout, classes, seed, frames, size, fps) -> list[tuple]:
    jobs = []
    for c in range(classes):
        name = CLASS_NAMES[c]
        for g in range(1, layout["groups"] + 1):
            for k in range(1, layout["clips"] + 1):
                rel = f"{name}/{video_name(name, g, k, layout['groups'])}"
                jobs.append((str(tmp), rel, seed, c, g, k, frames, size, fps))
    return jobs


def _write_lists(root: Path, layout: dict, classes: int) -> None:
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    names = CLASS_NAMES[:classes]
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    for fold, test_groups in layout["test_groups"].items():
        train_lines, test_lines = [], []
        for c, name in enumerate(names):
            for g in range(1, layout["groups"] + 1):
                for k in range(1, layout["clips"] + 1):
                    rel = f"{name}/{video_name(name, g, k, layout['groups'])}"
                    if g in test_groups:
                        test_lines.append(f"{rel}\n")
                    else:
                        train_lines.append(f"{rel} {c + 1}\n")
        (lists / f"trainlist{fold:02d}.txt").write_text("".join(train_lines))
        (lists / f"testlist{fold:02d}.txt").write_text("".join(test_lines))


def _remove_stale_tmp(out: Path) -> None:
    """Remove temporary folders of killed generations of ``out`` (their process is gone)."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- default set


def params_key(params: dict) -> str:
    """Short hash of generation parameters (and the format version)."""
    blob = json.dumps({"version": SYNTH_VERSION, **{k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


def default_dataset_root(workers: int | None = None) -> Path:
    """The default synthetic set, ``cache_dir()/synthetic-v<SYNTH_VERSION>-<hash>/``: generated on first
    use (atomically; a concurrent generator's finished copy is reused), reused after."""
    from cstp_cli.core.paths import cache_dir  # noqa: PLC0415

    root = cache_dir() / f"synthetic-v{SYNTH_VERSION}-{params_key(DEFAULT_SYNTH)}"
    if (root / "synth.json").is_file():
        return root
    workers = workers or max(1, min(os.cpu_count() or 1, 8))
    try:
        generate(root, **DEFAULT_SYNTH, workers=workers)
    except (DataError, OSError):
        if (root / "synth.json").is_file():  # another process finished first
            return root
        raise
    return root

