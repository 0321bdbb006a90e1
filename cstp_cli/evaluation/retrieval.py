"""Nearest-neighbour video retrieval (METHOD §7; VCOP's protocol): metrics and the run.

Gallery = the train split, queries = the test split; per video the mean of the protocol's
clip features (:func:`~cstp_cli.evaluation.features.video_features`); cosine similarity; a
query hits at k if any of its top-k gallery videos has its label; R@1/5/10/20/50.
:func:`run_retrieval` is the whole protocol as one library call (``cstp retrieve`` is a thin
layer on it): DDP-sharded feature extraction, optional BatchNorm re-estimation, recalls,
``retrieval.json`` with the switches and a PNG montage of a few queries and their top 5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cstp_cli.core.fsutil import check_output_dir
from cstp_cli.evaluation.settings import RetrievalSettings
from cstp_cli.evaluation.sources import EncoderSource

#: Recall cut-offs of the retrieval protocol (METHOD §7).
RECALL_KS: tuple[int, ...] = (1, 5, 10, 20, 50)

__all__ = ["RECALL_KS", "running_topk", "recall_at_k", "retrieval_report", "RetrievalResult", "run_retrieval"]


# --------------------------------------------------------------------------- metrics


def _normalise(x: Any, device: Any, dtype: Any) -> Any:
    import torch
    import torch.nn.functional as F

    return F.normalize(torch.as_tensor(x).to(device=device, dtype=dtype), dim=1)


def running_topk(
    queries: Any,
    gallery: Any,
    k: int,
    *,
    query_chunk: int = 1024,
    gallery_chunk: int = 8192,
    device: Any = "cpu",
    normalise: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k gallery items by cosine similarity, memory bounded (METHOD §7).

    Similarities are computed in blocks of ``query_chunk × gallery_chunk`` and merged into a
    running top-k, so memory is ``O(query_chunk · (gallery_chunk + k))`` whatever the gallery
    size. Ties are broken towards the lower gallery index (stable sort), so the result equals
    the unchunked one. On CPU similarities are float64 products rounded to float32 (so the
    blocking of the matmul cannot reorder items whose similarities differ in the last bit);
    float32 on CUDA.

    Args:
        queries: ``float[Q, F]``; gallery: ``float[G, F]``.
        normalise: L2-normalise both first (cosine similarity).

    Returns:
        ``(scores float[Q, k'], indices int64[Q, k'])`` with ``k' = min(k, G)``, best first.
    """
    import torch

    dtype = torch.float64 if str(device) == "cpu" else torch.float32
    q_all = torch.as_tensor(queries)
    g_all = torch.as_tensor(gallery)
    if normalise:
        q_all = _normalise(q_all, "cpu", dtype)
        g_all = _normalise(g_all, "cpu", dtype)
    G = g_all.shape[0]
    kk = min(int(k), G)
    scores_out, index_out = [], []
    for qs in range(0, q_all.shape[0], query_chunk):
        q = q_all[qs : qs + query_chunk].to(device=device, dtype=dtype)
        best_s = torch.empty(q.shape[0], 0, dtype=dtype, device=device)
        best_i = torch.empty(q.shape[0], 0, dtype=torch.int64, device=device)
        for gs in range(0, G, gallery_chunk):
            g = g_all[gs : gs + gallery_chunk].to(device=device, dtype=dtype)
            sim = q @ g.T
            if dtype == torch.float64:
                # ranking key: float64 products rounded to float32, so that the last-bit
                # differences of differently blocked matmuls cannot reorder near-equal items
                sim = sim.float().double()
            idx = torch.arange(gs, gs + g.shape[0], device=device).expand(q.shape[0], -1)
            # earlier candidates have lower indices and come first: a stable sort keeps ties in index order
            cand_s = torch.cat([best_s, sim], dim=1)
            cand_i = torch.cat([best_i, idx], dim=1)
            order = torch.sort(-cand_s, dim=1, stable=True).indices[:, :kk]
            best_s = torch.gather(cand_s, 1, order)
            best_i = torch.gather(cand_i, 1, order)
        scores_out.append(best_s.cpu())
        index_out.append(best_i.cpu())
    return torch.cat(scores_out).numpy(), torch.cat(index_out).numpy()


def recall_at_k(
    topk_indices: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray, ks: Sequence[int] = RECALL_KS
) -> dict[str, float]:
    """R@k in percent: a query hits at k if any of its top-k gallery items has its label (METHOD §7)."""
    match = np.asarray(gallery_labels)[np.asarray(topk_indices)] == np.asarray(query_labels)[:, None]
    first_hit = np.where(match.any(axis=1), match.argmax(axis=1), np.iinfo(np.int64).max)
    return {f"R@{k}": float(100.0 * np.mean(first_hit < k)) for k in ks}


def retrieval_report(
    query_features: np.ndarray,
    gallery_features: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    ks: Sequence[int] = RECALL_KS,
    device: Any = "cpu",
    **chunks: int,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """R@k of queries against a gallery, with the top-``max(ks)`` lists.

    Returns ``(recalls, scores float[Q, k], indices int64[Q, k])``.
    """
    scores, indices = running_topk(query_features, gallery_features, max(ks), device=device, **chunks)
    return recall_at_k(indices, query_labels, gallery_labels, ks), scores, indices


# --------------------------------------------------------------------------- the run


@dataclass
class RetrievalResult:
    """What a retrieval run produced (on ranks other than 0 only ``is_main=False``).

    Attributes:
        split: the fold; recall: ``{"R@k": percent}``; switches: the protocol's switches
        (as written to ``retrieval.json``); gallery/queries: numbers of videos;
        feature_dim: F; report: ``retrieval.json``; montage: the PNG, or None.
    """

    split: int = 0
    recall: dict[str, float] = field(default_factory=dict)
    switches: dict[str, Any] = field(default_factory=dict)
    gallery: int = 0
    queries: int = 0
    feature_dim: int = 0
    report: Path | None = None
    montage: Path | None = None
    is_main: bool = True

    def table(self) -> str:
        """The recalls as a plain-text table."""
        from cstp_cli.evaluation.reports import format_table

        return format_table([{"split": str(self.split), **self.recall}], ("split", *self.recall))


def run_retrieval(
    settings: RetrievalSettings, encoder: EncoderSource, data: str | None = None, *, progress: bool = True
) -> RetrievalResult:
    """Retrieval R@1/5/10/20/50 of ``encoder`` on ``data`` (METHOD §7).

    Args:
        settings: layered :class:`RetrievalSettings`.
        encoder: ``--checkpoint``, ``--init random`` or ``--onnx``.
        data: dataset folder or cache file; None: the built-in synthetic set.
        progress: progress bars (rank 0 only).

    Under ``torchrun`` every rank extracts its shard of the features and all ranks get all
    features; rank 0 alone computes the recalls and writes ``retrieval.json`` (and the
    montage) in ``settings.out`` (default ``runs/retrieve-<encoder>``).
    """
    from cstp_cli.core import dist as ddp
    from cstp_cli.core.progress import Progress
    from cstp_cli.errors import UsageError
    from cstp_cli.evaluation import features as ft
    from cstp_cli.evaluation import protocols as ev
    from cstp_cli.evaluation.reports import write_json
    from cstp_cli.evaluation.sources import default_out, feature_encoder, open_data

    settings.validate()  # settings built in Python are checked like layered ones
    s = settings
    encoder.check()
    dest = check_output_dir(Path(s.out) if s.out else default_out("retrieve", encoder), "--out")  # before any work
    ctx = ddp.init_distributed(s.device or "auto")  # torchrun: one rank per GPU; else one process
    dev = ctx.device
    enc, module, info = feature_encoder(encoder, s.backbone, s.width, dev, int(s.seed))
    with ddp.main_first():  # rank 0 builds a missing cache, the others reuse it
        reader = open_data(data, s.frame_size, int(s.workers))
    fold = int(s.split)
    gallery = ev.split_indices(reader, fold, "train")
    queries = ev.split_indices(reader, fold, "test")
    g_labels = ev.require_labels(reader, gallery, "gallery (train)")
    q_labels = ev.require_labels(reader, queries, "query (test)")
    T, S = int(s.frames or info["frames"]), int(s.clip_size or info["size"])
    common = dict(T=T, stride=int(s.stride), num_clips=int(s.clips), size=S, batch_videos=int(s.batch_size),
                  workers=int(s.workers))
    reest = s.bn_reestimate if s.bn_reestimate is not None else info["init"] == "random"
    show = progress and ctx.is_main
    if reest:
        if module is None:
            raise UsageError("--bn-reestimate needs a PyTorch encoder (--checkpoint or --init random)")
        bar = Progress(gallery.size, "BN statistics", unit="videos", enabled=show)
        ft.reestimate_bn(module, reader, gallery, device=dev, progress=bar.update, **common)
        bar.close()
        enc = ft.torch_encoder(module, dev)
    feats = {}
    for name, videos in (("gallery", gallery), ("queries", queries)):
        bar = Progress(len(ddp.shard_range(videos.size)), f"features {name}", unit="videos", enabled=show)
        feats[name] = ddp.sharded_map(videos, lambda v: ft.video_features(
            enc, reader, v, layer=s.layer, clip_l2=bool(s.clip_l2), progress=bar.update, **common))
        bar.close()
    if not ctx.is_main:  # every rank has all features; rank 0 alone reports and writes
        return RetrievalResult(is_main=False)
    recalls, scores, top = retrieval_report(feats["queries"], feats["gallery"], q_labels, g_labels,
                                            device=dev if str(dev).startswith("cuda") else "cpu")
    switches = {"split": fold, "stride": int(s.stride), "clips": int(s.clips), "frames": T, "clip_size": S,
                "layer": s.layer, "clip_l2": bool(s.clip_l2), "bn_reestimate": bool(reest),
                "frame_wh": [int(v) for v in reader.frame_wh], "similarity": "cosine"}
    result = RetrievalResult(split=fold, recall=recalls, switches=switches, gallery=int(gallery.size),
                             queries=int(queries.size), feature_dim=int(feats["gallery"].shape[1]),
                             report=dest / "retrieval.json")
    write_json(result.report, {"command": "retrieve", "encoder": info["init"], "data": data or "synthetic",
                               "switches": switches, "gallery": result.gallery, "queries": result.queries,
                               "feature_dim": result.feature_dim, "recall": recalls, "provider": info.get("provider")})
    n = min(int(s.montage), queries.size)
    if n > 0:
        result.montage = _montage(dest / "retrieval.png", reader, n, (queries, q_labels), (gallery, g_labels), top, scores)
    return result


def _montage(path: Path, reader: Any, n: int, queries: tuple, gallery: tuple, top: np.ndarray, scores: np.ndarray) -> Path:
    """The PNG of ``n`` evenly picked queries (middle frames) and their top 5 (METHOD §7 hit rule)."""
    from cstp_cli.evaluation.features import middle_frame
    from cstp_cli.evaluation.reports import retrieval_montage

    (q_videos, q_labels), (g_videos, g_labels) = queries, gallery
    pick = np.linspace(0, q_videos.size - 1, n).round().astype(int)
    return retrieval_montage(
        path,
        [middle_frame(reader, int(q_videos[q])) for q in pick],
        [int(q_labels[q]) for q in pick],
        [[middle_frame(reader, int(g_videos[g])) for g in top[q, :5]] for q in pick],
        [[int(g_labels[g]) for g in top[q, :5]] for q in pick],
        list(getattr(reader, "classes", []) or []), [list(scores[q, :5]) for q in pick],
    )
