"""Reports of the evaluation commands: tables, JSON and a retrieval montage.

Files users keep are written to a temporary name beside the target and renamed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cstp_cli.core.fsutil import atomic_write_bytes

__all__ = ["format_table", "write_json", "retrieval_montage"]




def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], floats: str = "{:.2f}") -> str:
    """A plain-text table (Markdown pipe syntax) of ``rows`` with ``columns``."""
    def cell(v: Any) -> str:
        return floats.format(v) if isinstance(v, float) else str(v)

    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    line = lambda cells: "| " + " | ".join(x.ljust(w) for x, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(columns), sep, *(line(b) for b in body)])


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON (indented, NumPy scalars converted), written atomically."""
    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    return atomic_write_bytes(path, (json.dumps(obj, indent=2, default=default) + "\n").encode())


def retrieval_montage(
    path: str | os.PathLike,
    query_frames: Sequence[np.ndarray],
    query_labels: Sequence[int],
    result_frames: Sequence[Sequence[np.ndarray]],
    result_labels: Sequence[Sequence[int]],
    classes: Sequence[str] | None = None,
    scores: Sequence[Sequence[float]] | None = None,
) -> Path:
    """A PNG grid: one row per query (its middle frame), then its top-k results.

    Results with the query's label get a green frame and "hit", others a red frame and
    "miss" (METHOD §7 hit rule).

    Args:
        query_frames: ``uint8[H, W, 3]`` per query; result_frames: per query, ``uint8[H, W, 3]`` per result.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(query_frames)
    k = max((len(r) for r in result_frames), default=0)
    fig, axes = plt.subplots(max(1, n), k + 1, figsize=(2.0 * (k + 1), 1.9 * max(1, n)), squeeze=False)
    name = lambda c: (classes[c] if classes is not None and 0 <= c < len(classes) else str(c))  # noqa: E731
    for r in range(n):
        ax = axes[r][0]
        ax.imshow(query_frames[r])
        ax.set_title(f"query: {name(int(query_labels[r]))}", fontsize=7)
        for j in range(k):
            ax = axes[r][j + 1]
            if j >= len(result_frames[r]):
                ax.axis("off")
                continue
            hit = int(result_labels[r][j]) == int(query_labels[r])
            ax.imshow(result_frames[r][j])
            colour = "#1a9850" if hit else "#d73027"
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(4)
            sc = f" {scores[r][j]:.2f}" if scores is not None else ""
            ax.set_title(f"{j + 1}: {'hit' if hit else 'miss'}{sc}\n{name(int(result_labels[r][j]))}", fontsize=7, color=colour)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
