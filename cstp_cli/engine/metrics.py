"""Training metrics: ``metrics.jsonl`` (one object per step), ``loss.png`` and the progress line.

A ``metrics.jsonl`` line::

    {"step": 12, "epoch": 0, "samples": 96, "lr": 0.0299, "clips_per_s": 41.3,
     "loss": 3.2, "grad_norm": 5.1,
     "terms": {"byol.loss": 3.1, "stor.spatial": 1.6, ...},     # raw terms
     "weighted": {"byol": 0.31, "stor": 3.2, ...},             # λ·Σ terms per owner
     "stats": {"byol.std": 0.08}}                              # collapse monitor etc.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from cstp_cli.core.fsutil import atomic_path, atomic_write_text


def split_logs(values: Mapping[str, float]) -> dict[str, Any]:
    """``{"terms/a.b": 1, "loss": 2, ...}`` → ``{"loss": 2, "terms": {"a.b": 1}, ...}``."""
    out: dict[str, Any] = {"terms": {}, "weighted": {}, "stats": {}}
    for key, value in values.items():
        group, sep, name = key.partition("/")
        if sep and group in out:
            out[group][name] = value
        else:
            out[key] = value
    return out


class MetricsLog:
    """Appends one JSON line per step; on resume keeps only lines up to the resumed step."""

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        else:
            self._truncate(resume_step)
        self._fh = self.path.open("a")

    def _truncate(self, step: int) -> None:
        keep = [line for line in read_metrics(self.path) if line["step"] <= step] if self.path.exists() else []
        atomic_write_text(self.path, "".join(json.dumps(line) + "\n" for line in keep))

    def write(self, record: Mapping[str, Any]) -> None:
        self._fh.write(json.dumps(record, allow_nan=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a ``metrics.jsonl`` (a torn last line is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def plot_losses(metrics_path: str | Path, png_path: str | Path) -> Path | None:
    """Draw the total loss and every raw term against the step into ``png_path`` (atomic)."""
    records = read_metrics(metrics_path)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    series = {"loss (total)": [r["loss"] for r in records]}
    for name in records[-1].get("terms", {}):
        series[name] = [r.get("terms", {}).get(name, math.nan) for r in records]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for name, values in series.items():
        ax.plot(steps, _smooth(values), label=name, linewidth=2.0 if name == "loss (total)" else 1.0)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (raw terms; moving average)")
    ax.set_yscale("log" if all(v > 0 for vs in series.values() for v in vs if v == v) else "linear")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    png_path = Path(png_path)
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return png_path


def _smooth(values: list[float], k: int = 10) -> list[float]:
    """Trailing moving average over ``k`` steps (NaN-free values)."""
    out, window = [], []
    for v in values:
        window.append(v)
        if len(window) > k:
            window.pop(0)
        good = [w for w in window if w == w]
        out.append(sum(good) / len(good) if good else math.nan)
    return out


def progress_suffix(record: Mapping[str, Any], epoch: int, epochs: int) -> str:
    """What the training bar shows after ``step/total``: epoch, total loss and every raw term."""
    terms = " ".join(f"{k} {v:.3g}" for k, v in record.get("terms", {}).items())
    return f"ep {epoch}/{epochs} loss {record.get('loss', math.nan):.4g} | {terms}"
