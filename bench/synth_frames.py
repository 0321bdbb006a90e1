"""Frame statistics of the built-in synthetic set (issue 12 item 4): what overlap is judged from.

    python bench/synth_frames.py [--videos 40] [--out bench/results/synth_frames.md]

For train videos of the default set (rendered in memory at 64×48, luma in grey levels) and, in
the same run, the same videos rendered as set version 3 did (a rigid background mottle of
contrast 0.2): the share of flat 8×8 patches (std < 2 grey levels), the mean absolute
difference of frames d apart, and the same for the background alone rendered at one camera
position (the *camera-compensated* change: 0 for a rigid background, whatever the drift).
A time offset whose only trace is a rigid shift looks the same as a box shift, so once the
two clips' boxes differ (both STOR parts at once) the temporal label is carried only by what
changes beyond a shift (bench/results/stor_diagnosis.md, rows S-Z).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cstp_cli.data import synth

OFFSETS = (1, 4, 13, 24)
STARTS = (0, 20, 39)


def luma(rgb: np.ndarray) -> np.ndarray:
    """Luma in grey levels, float64 of ``rgb[..., :3]`` (uint8 or [0, 1] floats × ``scale``)."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


@contextlib.contextmanager
def version_3() -> Iterator[None]:
    """Render as set version 3: a rigid mottle (no per-frame grid) of contrast 0.2."""
    grain, mottle = synth.GRAIN, synth.mottle
    synth.GRAIN, synth.mottle = 0.2, lambda *args, **kwargs: None
    try:
        yield
    finally:
        synth.GRAIN, synth.mottle = grain, mottle


def flat_share(frames: np.ndarray, side: int = 8) -> float:
    """Share of ``side``×``side`` luma patches of ``frames uint8[N, H, W, 3]`` with std < 2."""
    y = luma(frames.astype(np.float64))
    n, h, w = y.shape
    p = y[:, : h // side * side, : w // side * side].reshape(n, h // side, side, w // side, side)
    return float((p.std(axis=(2, 4)) < 2).mean())


def background_change(bg: dict, grid: np.ndarray | None, d: int, t: int) -> float:
    """Mean |Δ luma| between the background ``bg`` of frames t and t + d with the mottle
    ``grid`` per frame (None: rigid), both rendered at one camera position: what changes
    beyond the drift."""
    if grid is None:
        return 0.0
    size = synth.DEFAULT_SYNTH["size"]
    a, b = (luma(synth.render_background(bg, size, (0.0, 0.0), grid[i])) * 255 for i in (t, t + d))
    return float(np.abs(a - b).mean())


def measure(videos: int) -> dict[str, float]:
    """The statistics over ``videos`` train clips (cycling over classes)."""
    classes = synth.DEFAULT_SYNTH["classes"]
    raw = {d: [] for d in OFFSETS}
    change = {d: [] for d in OFFSETS}
    flat = []
    for i in range(videos):
        c, g = i % classes, 1 + i // classes
        frames = synth.DEFAULT_SYNTH["frames"]
        v = synth.render_clip(0, c, g, 1, frames, synth.DEFAULT_SYNTH["size"])
        bg = synth.sample_scene(np.random.default_rng([0, 1, c, g]))["background"]
        grid = synth.clip_mottle(0, c, g, 1, frames)
        flat.append(flat_share(v))
        y = luma(v.astype(np.float64))
        for d in OFFSETS:
            for t in STARTS:
                raw[d].append(float(np.abs(y[t] - y[t + d]).mean()))
                change[d].append(background_change(bg, grid, d, t))
    out = {"flat 8x8 patches (%)": 100 * float(np.mean(flat))}
    out.update({f"frames {d} apart": float(np.mean(raw[d])) for d in OFFSETS})
    out.update({f"background {d} apart, camera-compensated": float(np.mean(change[d])) for d in OFFSETS})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=40)
    p.add_argument("--out", default="bench/results/synth_frames.md")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    now = measure(args.videos)
    with version_3():
        before = measure(args.videos)
    lines = [
        "# Frame statistics of the built-in synthetic set",
        "",
        (f"`python bench/synth_frames.py --videos {args.videos}`: {args.videos} train videos at 64×48, luma, grey levels;"
         f" frame pairs from starts {', '.join(map(str, STARTS))}; {time.perf_counter() - t0:.0f} s."),
        "",
        f"| statistic | version 3 (rigid background) | version {synth.SYNTH_VERSION} (now) |",
        "|---|---|---|",
        *(f"| {k} | {before[k]:.1f} | {now[k]:.1f} |" for k in now),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
