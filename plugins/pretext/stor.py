"""STOR: spatio-temporal overlap rate prediction (METHOD §1, §2.2–§2.3, §3).

Plan steps (worker side, NumPy, integer geometry):

* ``temporal`` — label k_t uniform among the labels whose offset fits at pace s; clip 2
  starts ``d = s·δ_k`` frames from clip 1 (either side), ``δ_k = round_half_up((T−1)·k/n)``;
  videos shorter than a clip loop with label 0. Label ``"stor.temporal"``.
* ``spatial`` — box 1 a random-resized crop; label k_s uniform, rate m/n = 1 − k/n; box 2 is
  box 1 shifted so their overlap is a corner of box 1 with area in
  ``(m·w·h/n − sw, m·w·h/n]``. Option ``decorrelate`` keeps only box sizes where every rate
  fits and draws the placement among those that fit. Label ``"stor.spatial"``.

One part only (``parts=temporal`` or ``parts=spatial``): with ``isolate`` (the default) the
task asks the sampler (``PretextTask.shared``) to keep everything else of the two clips the
same, so the label is the only difference: temporal-only shares crop, flip and the
photometric block (only time differs); spatial-only shares the frames (only the box
differs). ``isolate=false`` gives the other part's core default instead (independent crop,
flip and colour; independent starts), as before this option existed.

Heads: spatial and temporal, each ``2D → 2D → n`` (Linear-BN-ReLU-Linear) on
``cat(y1, y2)``; terms ``"stor.spatial"`` and ``"stor.temporal"`` (cross-entropy each).

Options arrive parsed (the engine resolves ``--set stor.*``); the task checks ranges only.
Option ``fusion`` (beyond the paper, :mod:`.stor_heads`): ``concat``, ``corr`` or ``profile``
compare the two clips' last conv maps before pooling (the task then sets ``uses_feature_maps``);
``profile`` reads the temporal part as a time-shift profile.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cstp_cli.api import (
    Option,
    PairPlan,
    PretextSpec,
    PretextTask,
    candidate_strings,
    clip_idx,
    corner_shift,
    delta_steps,
    draw_rrc_size,
    inside,
    looped_idx,
    min_overlap_width,
    overlap_height,
    rrc_box,
)
from .stor_heads import FUSIONS, build_head
from cstp_cli.hookspecs import hookimpl

PARTS = ("spatial", "temporal")
#: The per-clip plan fields ``stor.share`` may keep equal in both clips.
SHAREABLE = ("flip", "photometric")
RRC_TRIES = 10  # size draws for a decorrelated box 1, as many as the core crop (METHOD §2.3)
PLACEMENT_TRIES = 10
MAX_BOX_REDRAWS = 1000

OPTIONS: dict[str, Option] = {
    "candidates": Option("candidates", "int", 5, "number n of overlap rates 1, (n-1)/n, ..., 1/n (labels 0..n-1)"),
    "parts": Option(
        "parts", "list[str]", ["spatial", "temporal"], "which STOR labels and heads are used", choices=PARTS
    ),
    "fusion": Option(
        "fusion", "str", "pooled",
        "head: pooled (the paper's, on cat(y1, y2)); concat or corr compare the clips' last conv maps before "
        "pooling; profile: corr for spatial, the best match per time shift for temporal (maps that keep time: cnn4t)",
        choices=FUSIONS,
    ),
    "decorrelate": Option(
        "decorrelate", "bool", False, "draw box sizes for which every rate fits, so box size does not predict the label"
    ),
    "isolate": Option(
        "isolate",
        "bool",
        True,
        "with one part only, keep the rest of the two clips the same (temporal: crop, flip, colour; spatial: frames)",
    ),
    "share": Option(
        "share",
        "list[str]",
        [],
        "beyond the paper: also keep these per-clip draws equal in both clips (flip, photometric), so the "
        "clips differ only in time, box and rotation; helps STOR learn at small scale",
        choices=SHAREABLE,
    ),
}

#: What one part alone asks the sampler to keep equal in both clips (``isolate``).
ISOLATED_SHARED = {
    ("temporal",): frozenset({"boxes", "flip", "photometric"}),
    ("spatial",): frozenset({"idx"}),
}


# --------------------------------------------------------------------------- geometry
# (offsets, crops, overlap widths/heights, clip indices come from the API: the core's own.)


def overlap_widths(w: int, h: int, m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """All overlap widths ``sw ∈ [ceil(m·w/n), w]`` and heights ``sh = m·w·h // (n·sw)``."""
    sw = np.arange(min_overlap_width(w, m, n), w + 1, dtype=np.int64)
    return sw, overlap_height(w, h, m, n, sw)


@lru_cache(maxsize=65536)
def feasible_widths(w: int, h: int, m: int, n: int, W: int, H: int) -> tuple[int, ...]:
    """Overlap widths at rate m/n whose pair of boxes fits a ``W×H`` frame somewhere.

    The pair spans ``(2w − sw) × (2h − sh)`` whatever the corner, so it fits iff that fits.
    """
    sw, sh = overlap_widths(w, h, m, n)
    ok = (2 * w - sw <= W) & (2 * h - sh <= H) & (sh >= 1)
    return tuple(int(v) for v in sw[ok])


def every_rate_fits(w: int, h: int, n: int, W: int, H: int) -> bool:
    """Whether every rate m/n, m = 1..n, has a placement of a ``w×h`` pair in the frame."""
    if not (1 <= w <= W and 1 <= h <= H):
        return False
    return all(feasible_widths(w, h, m, n, W, H) for m in range(1, n + 1))


@lru_cache(maxsize=1024)
def largest_decorrelated_square(n: int, W: int, H: int) -> int:
    """Side of the largest square box for which every rate fits (the decorrelate fallback)."""
    for side in range(min(W, H), 0, -1):
        if every_rate_fits(side, side, n, W, H):
            return side
    raise ValueError(f"stor: no box fits all {n} overlap rates in {W}x{H} frames; use fewer stor.candidates")


# --------------------------------------------------------------------------- the task


class StorTask(PretextTask):
    """Spatio-temporal overlap rate prediction (METHOD §2.2–§2.3, §3)."""

    name = "stor"
    phases = frozenset({"temporal", "spatial"})
    writes = frozenset({"idx", "boxes"})

    def __init__(
        self,
        candidates: int = 5,
        parts: Sequence[str] = PARTS,
        decorrelate: bool = False,
        isolate: bool = True,
        fusion: str = "pooled",
        share: Sequence[str] = (),
    ):
        super().__init__(
            candidates=candidates, parts=list(parts), decorrelate=decorrelate, isolate=isolate, fusion=fusion, share=list(share)
        )
        self.n = int(candidates)
        if self.n < 2:
            raise ValueError(f"stor.candidates must be at least 2, got {self.n}")
        unknown = [p for p in parts if p not in PARTS]
        if unknown:
            raise ValueError(f"stor.parts must name spatial, temporal or both, got {unknown[0]!r}")
        self.parts = tuple(p for p in PARTS if p in parts)
        if not self.parts:
            raise ValueError("stor.parts must name spatial, temporal or both")
        self.decorrelate = bool(decorrelate)
        if fusion not in FUSIONS:
            raise ValueError(f"stor.fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        self.fusion = str(fusion)
        #: Read by the engine: ``loss`` then also gets the un-pooled maps (API ``PretextTask``).
        self.uses_feature_maps = self.fusion != "pooled"
        self.phases = frozenset(self.parts)
        self.writes = frozenset({"temporal": "idx", "spatial": "boxes"}[p] for p in self.parts)
        bad = [f for f in share if f not in SHAREABLE]
        if bad:
            raise ValueError(f"stor.share may name {' and '.join(SHAREABLE)}, got {bad[0]!r}")
        self.shared = (ISOLATED_SHARED.get(self.parts, frozenset()) if isolate else frozenset()) | frozenset(share)

    # description ----------------------------------------------------------------------
    @property
    def mode_tag(self) -> str | None:
        """``"decorrelate"`` with ``stor.decorrelate`` (``pairs.jsonl`` mode ``clean+decorrelate``)."""
        return "decorrelate" if self.decorrelate else None

    def plan_info(self) -> dict[str, list[str]]:
        """``{"candidates": ["1", "4/5", …]}``: the overlap rates in label order (METHOD §0)."""
        return {"candidates": candidate_strings(self.n)}

    def label_classes(self) -> dict[str, int]:
        """n classes per active part."""
        return {f"stor.{p}": self.n for p in self.parts}

    # worker side ----------------------------------------------------------------------
    def plan_step(self, phase: str, plan: PairPlan, rng: np.random.Generator) -> None:
        if phase == "temporal":
            self.temporal(plan, rng)
        elif phase == "spatial":
            self.spatial(plan, rng)

    def temporal(self, plan: PairPlan, rng: np.random.Generator) -> None:
        """METHOD §2.2: ``idx`` and ``"stor.temporal"``."""
        T, N, s, n = plan.T, plan.num_frames, plan.pace, self.n
        span = (T - 1) * s
        if span > N - 1:  # too short for a clip at this pace: loop
            plan.idx = looped_idx(T, N, s if N >= T else 1)
            plan.labels["stor.temporal"] = np.int64(0)
            return
        labels = [k for k in range(n) if span + s * delta_steps(k, n, T) <= N - 1]
        k = labels[int(rng.integers(0, len(labels)))]
        d = s * delta_steps(k, n, T)
        a = int(rng.integers(0, N - span - d))
        b = a + d
        if rng.random() < 0.5:
            a, b = b, a
        plan.idx = clip_idx((a, b), s, T)
        plan.labels["stor.temporal"] = np.int64(k)

    def spatial(self, plan: PairPlan, rng: np.random.Generator) -> None:
        """METHOD §2.3: ``boxes`` and ``"stor.spatial"``."""
        W, H = plan.frame_wh
        k = int(rng.integers(0, self.n))
        boxes = self._decorrelated(W, H, k, rng) if self.decorrelate else self._clean(W, H, k, rng)
        plan.boxes = np.asarray(boxes, dtype=np.int64)
        plan.labels["stor.spatial"] = np.int64(k)

    def _clean(self, W: int, H: int, k: int, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
        """Box 1, then up to 10 tries of (sw, corner) for box 2; all fail: redraw box 1, keep k.

        One integer draw v per try: ``sw = ceil(m·w/n) + v // 4``, corner ``v % 4``.
        """
        n, m = self.n, self.n - k
        for _ in range(MAX_BOX_REDRAWS):
            x, y, w, h = rrc_box(W, H, rng)
            lo = min_overlap_width(w, m, n)
            for v in rng.integers(0, (w - lo + 1) * 4, size=PLACEMENT_TRIES).tolist():
                sw = lo + v // 4
                sh = overlap_height(w, h, m, n, sw)
                sx, sy = corner_shift(v % 4, w - sw, h - sh)
                if inside((x + sx, y + sy, w, h), W, H):
                    return [(x, y, w, h), (x + sx, y + sy, w, h)]
        raise ValueError(f"stor: no placement of rate {m}/{n} found in {W}x{H} frames; use fewer stor.candidates")

    def _decorrelated(self, W: int, H: int, k: int, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
        n, m = self.n, self.n - k
        for _ in range(RRC_TRIES):
            w, h = draw_rrc_size(W, H, rng)
            if every_rate_fits(w, h, n, W, H):
                break
        else:
            w = h = largest_decorrelated_square(n, W, H)
        widths = feasible_widths(w, h, m, n, W, H)
        sw = widths[int(rng.integers(0, len(widths)))]
        sh = overlap_height(w, h, m, n, sw)
        dx, dy = w - sw, h - sh
        corner = int(rng.integers(0, 4))
        ux = int(rng.integers(0, W - (w + dx) + 1))
        uy = int(rng.integers(0, H - (h + dy) + 1))
        left, top = corner in (0, 2), corner in (0, 1)  # box 2 lies left / above box 1
        x1, x2 = (ux + dx, ux) if left else (ux, ux + dx)
        y1, y2 = (uy + dy, uy) if top else (uy, uy + dy)
        return [(x1, y1, w, h), (x2, y2, w, h)]

    # training side --------------------------------------------------------------------
    @property
    def chance_loss(self) -> dict[str, float]:
        """Each part's cross-entropy at chance: ``ln n`` (n-way; ``ln 5`` by default), for the loss plot."""
        return {f"stor.{p}": math.log(self.n) for p in self.parts}

    def head(self, feature_dim: int) -> nn.Module:
        """One head per part, keyed ``"spatial"``/``"temporal"``: the paper's ``2D → 2D → n``
        (METHOD §3) or the ``fusion`` head of :mod:`.stor_heads`."""
        return nn.ModuleDict({p: build_head(self.fusion, int(feature_dim), self.n, p) for p in self.parts})

    def loss(
        self,
        y1: torch.Tensor,
        y2: torch.Tensor,
        labels: Mapping[str, torch.Tensor],
        head: nn.Module,
        maps: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{"stor.spatial": CE, "stor.temporal": CE}``; y float[B, D], labels int64[B].

        ``pooled`` reads ``cat(y1, y2)``; ``concat``/``corr``/``profile`` read ``maps`` = the two clips'
        last conv maps ``float[B, C, t, h, w]`` (passed by the engine when ``uses_feature_maps``).
        """
        if self.fusion == "pooled":
            z = torch.cat([y1, y2], dim=1)
            return {f"stor.{p}": F.cross_entropy(head[p](z), labels[f"stor.{p}"].long()) for p in self.parts}
        if maps is None:
            raise ValueError(f"stor.fusion={self.fusion} needs the clips' feature maps (loss(..., maps=(m1, m2)))")
        m1, m2 = maps
        return {f"stor.{p}": F.cross_entropy(head[p](m1, m2), labels[f"stor.{p}"].long()) for p in self.parts}


@hookimpl
def register_pretext_tasks(register):
    register(
        PretextSpec(
            name="stor",
            build=StorTask,
            default_weight=1.0,
            options=OPTIONS,
            description="spatio-temporal overlap rate prediction of the two clips (n-way, spatial and temporal)",
        )
    )
