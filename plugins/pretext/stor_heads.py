"""STOR heads: the paper's pooled head and two fusions that compare the clips before pooling.

Training-only modules (METHOD §3: heads are never exported). Chosen with
``--set stor.fusion=pooled|concat|corr``:

* ``pooled`` — the paper's head (METHOD §3): ``2D → 2D → n`` (Linear-BN-ReLU-Linear) on
  ``cat(y1, y2)`` of the globally pooled features ``float[B, D]``. Global pooling discards
  *where* things are, which is what spatial overlap is judged from.
* ``concat`` — beyond the paper: the last conv maps ``m1, m2 float[B, C, t, h, w]``
  concatenated on channels, two 3×3×3 conv-BN-ReLU layers (``2C → C/2 → C/2``), global
  average, ``Linear(C/2, n)``. Compares the clips position by position before pooling.
* ``corr`` — beyond the paper: a cost volume. Each position's feature is L2-normalised over
  channels; for every displacement ``(dt, dy, dx)`` of ``m2`` against ``m1`` the mean cosine
  similarity over the positions that overlap, giving ``float[B, 2t−1, 2h−1, 2w−1]``; that
  volume is average-pooled to a fixed ``3×7×7`` (so the head does not depend on the clip
  size) and read by ``147 → 2C → n`` (BN-Linear-BN-ReLU-Linear). The displacement with the
  best match *is* the overlap geometry, and its position in the volume is kept (no pooling
  over displacements), so a linear reader can map it to the rate.
* ``profile`` — beyond the paper: ``corr`` for the spatial part; for the temporal part the
  same cost volume read as a *time-shift profile* (:class:`ProfileHead`): the best match over
  spatial displacements at each time displacement, so a box shift between the clips (both
  parts at once) does not hide the time offset. Made for maps that keep the time axis
  (backbone ``cnn4t``: with 8×32² clips the best-matching |dt| *is* the offset δ_k).

Every head maps its inputs to logits ``float[B, n]``; the task's loss is cross-entropy.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from cstp_cli.api import pretext_head

FUSIONS = ("pooled", "concat", "corr", "profile")
#: Fixed size the ``corr`` cost volume is pooled to (dt, dy, dx).
CORR_GRID = (3, 7, 7)


def pooled_head(feature_dim: int, n: int) -> nn.Module:
    """The paper's head (METHOD §3): ``2D → 2D → n`` on ``cat(y1, y2)``, ``y float[B, D]``.

    A plain ``nn.Sequential`` (the same parameter names as before fusions existed, so older
    checkpoints resume)."""
    d = 2 * int(feature_dim)
    return pretext_head(d, d, n)


class ConcatHead(nn.Module):
    """``cat(m1, m2)`` on channels → 2 conv-BN-ReLU (``2C → C/2 → C/2``) → global mean → ``Linear(C/2, n)``.

    Inputs ``m1, m2 float[B, C, t, h, w]`` (C = the backbone's feature_dim); logits ``float[B, n]``.
    """

    def __init__(self, feature_dim: int, n: int):
        super().__init__()
        c, k = int(feature_dim), max(1, int(feature_dim) // 2)
        self.conv = nn.Sequential(
            nn.Conv3d(2 * c, k, 3, padding=1, bias=False), nn.BatchNorm3d(k), nn.ReLU(inplace=True),
            nn.Conv3d(k, k, 3, padding=1, bias=False), nn.BatchNorm3d(k), nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(k, n)

    def forward(self, m1: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
        z = self.conv(torch.cat([m1, m2], dim=1))
        return self.fc(torch.flatten(F.adaptive_avg_pool3d(z, 1), 1))


@lru_cache(maxsize=64)
def _displacements(t: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For positions p, q of a ``t×h×w`` grid: the bin of displacement ``q − p`` in the
    ``(2t−1)×(2h−1)×(2w−1)`` volume (``int64[P·P]``, row p major) and each bin's count
    (``float[bins]``, all >= 1)."""
    tt, yy, xx = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([tt.flatten(), yy.flatten(), xx.flatten()], dim=1)  # [P, 3]
    d = pos[None, :, :] - pos[:, None, :]  # [P(p), P(q), 3] = q − p
    idx = ((d[..., 0] + t - 1) * (2 * h - 1) + (d[..., 1] + h - 1)) * (2 * w - 1) + (d[..., 2] + w - 1)
    idx = idx.flatten()
    counts = torch.bincount(idx, minlength=(2 * t - 1) * (2 * h - 1) * (2 * w - 1)).float()
    return idx, counts


def cost_volume(m1: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of ``m1`` and ``m2`` (``float[B, C, t, h, w]``) per displacement.

    ``V[b, dt + t−1, dy + h−1, dx + w−1] = mean_p cos(m1[b, :, p], m2[b, :, p + d])`` over the
    positions p for which ``p + d`` is inside the grid. Returns ``float[B, 2t−1, 2h−1, 2w−1]``.
    """
    B, C, t, h, w = m1.shape
    a = F.normalize(m1.flatten(2).float(), dim=1)  # [B, C, P]
    b = F.normalize(m2.flatten(2).float(), dim=1)
    sim = torch.einsum("bcp,bcq->bpq", a, b).flatten(1)  # [B, P·P]
    idx, counts = _displacements(t, h, w)
    idx, counts = idx.to(sim.device), counts.to(sim.device)
    vol = sim.new_zeros(B, counts.numel()).index_add_(1, idx, sim) / counts
    return vol.view(B, 2 * t - 1, 2 * h - 1, 2 * w - 1)


class CorrHead(nn.Module):
    """Cost volume of ``m1`` against ``m2`` (:func:`cost_volume`) → pooled to :data:`CORR_GRID`
    → BN → ``Linear(147, 2C)`` → BN → ReLU → ``Linear(2C, n)``; logits ``float[B, n]``."""

    def __init__(self, feature_dim: int, n: int):
        super().__init__()
        cells = CORR_GRID[0] * CORR_GRID[1] * CORR_GRID[2]
        hidden = 2 * int(feature_dim)
        self.mlp = nn.Sequential(nn.BatchNorm1d(cells), pretext_head(cells, hidden, n))

    def forward(self, m1: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
        vol = cost_volume(m1, m2).unsqueeze(1)  # [B, 1, 2t−1, 2h−1, 2w−1]
        vol = F.adaptive_avg_pool3d(vol, CORR_GRID)
        return self.mlp(torch.flatten(vol, 1))


#: Time shifts :class:`ProfileHead` reads unpooled (maps with a longer time axis are binned).
PROFILE_T_MAX = 16


class ProfileHead(nn.Module):
    """Temporal STOR head: how well the clips match at each time shift.

    From the cost volume ``float[B, 2t−1, 2h−1, 2w−1]`` of ``m1, m2 float[B, C, t, h, w]``
    (:func:`cost_volume`): the best match over spatial displacements per time displacement dt,
    folded to |dt| = 0..t−1 (clip 2 lies on either side), ``float[B, t]`` (max-pooled to
    ``t_max`` bins when t is longer); that profile and its difference to |dt| = 0, zero-padded
    to ``2·t_max`` → BN → ``Linear-BN-ReLU-Linear``
    (hidden 2C) → logits ``float[B, n]``. The maximum over spatial displacements finds where
    the two boxes line up wherever they are; how well they match there at each dt says how
    far apart in time the clips are (a background that changes appearance over time makes the
    match fall with |dt|).
    """

    def __init__(self, feature_dim: int, n: int, t_max: int = PROFILE_T_MAX):
        super().__init__()
        self.t_max = int(t_max)
        self.mlp = nn.Sequential(nn.BatchNorm1d(2 * self.t_max), pretext_head(2 * self.t_max, 2 * int(feature_dim), n))

    @staticmethod
    def profile(m1: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
        """Best cosine match per time shift, folded to |dt| = 0..t−1: ``float[B, t]``."""
        vol = cost_volume(m1, m2)
        t = (vol.shape[1] + 1) // 2
        best = vol.flatten(2).amax(2)  # [B, 2t−1]
        return torch.maximum(best[:, t - 1:], best[:, :t].flip(1))

    def forward(self, m1: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
        folded = self.profile(m1, m2)
        if folded.shape[1] > self.t_max:
            folded = F.adaptive_max_pool1d(folded[:, None], self.t_max)[:, 0]
        z = torch.cat([folded, folded - folded[:, :1]], 1)
        return self.mlp(F.pad(z, (0, 2 * self.t_max - z.shape[1])))


HEADS = {"pooled": pooled_head, "concat": ConcatHead, "corr": CorrHead}
#: The head of each part for fusions that differ by part.
PART_HEADS = {"profile": {"spatial": CorrHead, "temporal": ProfileHead}}


def build_head(fusion: str, feature_dim: int, n: int, part: str = "spatial") -> nn.Module:
    """The STOR head of ``fusion`` (one of :data:`FUSIONS`) for ``part`` and ``n`` overlap rates."""
    if fusion in PART_HEADS:
        return PART_HEADS[fusion][part](feature_dim, n)
    if fusion not in HEADS:
        raise ValueError(f"stor.fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    return HEADS[fusion](feature_dim, n)
