"""The shortcut report of ``cstp data pairs`` (METHOD §2 "Shortcut report"). Pure NumPy.

It reads schema-1 records (``pairs.jsonl`` objects, see :func:`cstp_cli.plans.sampling.plan_to_json`)
and measures what a network could learn without looking at the content:

* label histograms (every ``labels`` key; per-clip labels pooled over both clips);
* the mutual information of (pace, k_t) in bits — zero when the temporal label is drawn
  independently of the pace, positive when short videos forbid large offsets at high paces;
* how often the two clips are equal in frames, crop, flip, colour and rotation (the
  records' ``same`` lists): temporal-only STOR shows crop, flip and colour at 100 %,
  spatial-only STOR frames at 100 %;
* how well box area alone predicts k_s: a per-area-bin majority classifier fitted on half
  of the plans (quantile bins) and scored on the other half, against the majority-class
  chance level (default sampling ≈ 39 % vs 20 %, ``stor.decorrelate`` ≈ chance).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "label_histograms",
    "mutual_information_bits",
    "area_predictability",
    "shortcut_report",
    "format_report",
]


def label_histograms(records: Sequence[Mapping[str, Any]], minlength: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """Counts ``int64[K]`` of each label value, per label key (per-clip labels pooled).

    ``minlength``: the number of classes of a key, so that unseen classes count 0.
    """
    values: dict[str, list[int]] = {}
    for rec in records:
        for key, value in rec["labels"].items():
            values.setdefault(key, []).extend(np.ravel(value).astype(int).tolist())
    minlength = minlength or {}
    return {
        key: np.bincount(np.asarray(v, dtype=np.int64), minlength=minlength.get(key, 0))
        for key, v in sorted(values.items())
    }


def mutual_information_bits(x: Iterable[int], y: Iterable[int]) -> float:
    """Plug-in mutual information ``I(X; Y)`` in bits of two paired integer samples."""
    x = np.asarray(list(x), dtype=np.int64)
    y = np.asarray(list(y), dtype=np.int64)
    if x.size == 0:
        return 0.0
    _, xi = np.unique(x, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    joint = np.zeros((xi.max() + 1, yi.max() + 1))
    np.add.at(joint, (xi, yi), 1.0)
    joint /= joint.sum()
    px, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log2(joint[nz] / (px @ py)[nz])))


def area_predictability(area: np.ndarray, labels: np.ndarray, bins: int = 20) -> tuple[float, float]:
    """Held-out accuracy of the best per-area-bin majority label, and the chance level.

    area, labels: ``[M]`` (box-1 area in pixels, spatial label). Even positions train (bin
    edges = area quantiles, majority label per bin), odd positions test. Chance = accuracy of
    always answering the training set's majority label. Returns ``(accuracy, chance)``.
    """
    area = np.asarray(area, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if area.size < 4:
        return float("nan"), float("nan")
    train, test = np.arange(0, area.size, 2), np.arange(1, area.size, 2)
    nbins = max(1, min(bins, train.size // 25))
    edges = np.unique(np.quantile(area[train], np.linspace(0, 1, nbins + 1)[1:-1]))
    k = int(labels.max()) + 1
    counts = np.zeros((edges.size + 1, k))
    np.add.at(counts, (np.searchsorted(edges, area[train], side="right"), labels[train]), 1.0)
    overall = int(np.argmax(np.bincount(labels[train], minlength=k)))
    majority = np.where(counts.sum(1) > 0, np.argmax(counts, 1), overall)
    predicted = majority[np.searchsorted(edges, area[test], side="right")]
    accuracy = float(np.mean(predicted == labels[test]))
    chance = float(np.mean(labels[test] == overall))
    return accuracy, chance


def _class_counts(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Class counts when the sampler's are not given: n of ``candidates`` for STOR, 4 for rot."""
    if not records:
        return {}
    n = len(records[0]["candidates"])
    return {"stor.spatial": n, "stor.temporal": n, "rot.clips": 4}


#: How the report names the fields of a record's ``same`` list.
SAME_NAMES = {"idx": "frames", "boxes": "crop", "flip": "flip", "photometric": "colour", "rot90": "rotation"}


def same_fractions(records: Sequence[Mapping[str, Any]]) -> dict[str, float] | None:
    """Fraction of plans whose two clips are equal in each field (records' ``same`` lists;
    None for records written before the list existed)."""
    if not records or "same" not in records[0]:
        return None
    return {fld: float(np.mean([fld in r["same"] for r in records])) for fld in SAME_NAMES}


def shortcut_report(records: Sequence[Mapping[str, Any]], label_classes: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Histograms, pace↔k_t mutual information and area→k_s predictability of ``records``.

    ``label_classes``: classes per label key (the sampler's ``label_classes()``); without it,
    STOR's n is read from the records' ``candidates`` and rot has 4.
    Keys: ``count``, ``mode``, ``histograms`` (label → counts), ``pace_values``/``pace_counts``,
    ``mi_pace_temporal_bits`` (None without ``stor.temporal``), ``area_accuracy`` and
    ``area_chance`` (None without ``stor.spatial``), mean measured overlaps, ``same`` (field →
    fraction of plans whose clips are equal in it, see :func:`same_fractions`).
    """
    out: dict[str, Any] = {
        "count": len(records),
        "mode": records[0]["mode"] if records else None,
        "histograms": label_histograms(records, _class_counts(records) if label_classes is None else label_classes),
        "same": same_fractions(records),
    }
    pace = np.array([r["pace"] for r in records], dtype=np.int64)
    out["pace_values"], out["pace_counts"] = np.unique(pace, return_counts=True)
    out["mi_pace_temporal_bits"] = None
    if records and "stor.temporal" in records[0]["labels"]:
        k_t = np.array([r["labels"]["stor.temporal"] for r in records], dtype=np.int64)
        out["mi_pace_temporal_bits"] = mutual_information_bits(pace, k_t)
    out["area_accuracy"] = out["area_chance"] = None
    if records and "stor.spatial" in records[0]["labels"]:
        k_s = np.array([r["labels"]["stor.spatial"] for r in records], dtype=np.int64)
        area = np.array([r["boxes"][0][2] * r["boxes"][0][3] for r in records], dtype=np.int64)
        out["area_accuracy"], out["area_chance"] = area_predictability(area, k_s)
    for key in ("spatial", "temporal"):
        out[f"mean_measured_{key}"] = float(np.mean([r["measured"][key] for r in records])) if records else None
    return out


def _hist_line(counts: np.ndarray, names: Sequence[str] | None = None) -> str:
    total = max(1, int(counts.sum()))
    parts = []
    for v, c in enumerate(counts):
        name = names[v] if names is not None and v < len(names) else str(v)
        parts.append(f"{name}: {c} ({100 * c / total:.1f}%)")
    return ", ".join(parts)


def format_report(report: Mapping[str, Any], candidates: Sequence[str] | None = None) -> str:
    """The report as text lines for the terminal."""
    lines = [f"{report['count']} plans, sampling {report['mode']}"]
    pace = ", ".join(f"{v}: {c}" for v, c in zip(report["pace_values"].tolist(), report["pace_counts"].tolist()))
    lines.append(f"pace s: {pace}")
    for key, counts in report["histograms"].items():
        names = candidates if key.startswith("stor.") else None
        lines.append(f"{key}: {_hist_line(counts, names)}")
    if report["mi_pace_temporal_bits"] is not None:
        lines.append(f"mutual information (pace, stor.temporal): {report['mi_pace_temporal_bits']:.4f} bits")
    if report["area_accuracy"] is not None:
        lines.append(
            f"box area alone predicts stor.spatial: {100 * report['area_accuracy']:.1f}% held-out "
            f"(chance {100 * report['area_chance']:.1f}%)"
        )
    if report.get("same") is not None:
        parts = ", ".join(f"{SAME_NAMES[k]} {100 * v:.1f}%" for k, v in report["same"].items())
        lines.append(f"clips equal in: {parts}")
    if report.get("mean_measured_spatial") is not None:
        lines.append(
            f"mean measured overlap: spatial {report['mean_measured_spatial']:.3f}, "
            f"temporal {report['mean_measured_temporal']:.3f}"
        )
    return "\n".join(lines)
