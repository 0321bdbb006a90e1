"""Training metrics: ``metrics.jsonl`` (one object per step), ``loss.png``, a progress bar.

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
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, TextIO


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
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(line) + "\n" for line in keep))
        os.replace(tmp, self.path)

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
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png_path)
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


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """A one-line progress bar on stderr: step, epoch, loss terms, clips/s, ETA.

    On a terminal it redraws in place (at most ``fps`` times a second); otherwise it prints
    a plain line every ``every_s`` seconds and at the end of each epoch.
    """

    def __init__(self, total_steps: int, steps_per_epoch: int, start_step: int = 0, stream: TextIO | None = None, every_s: float = 10.0, enabled: bool = True):
        self.total, self.spe, self.start = total_steps, steps_per_epoch, start_step
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.1 if self.tty else every_s
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.rate = 0.0

    def update(self, step: int, clips: int, record: Mapping[str, Any], force: bool = False) -> None:
        """Report after global step ``step`` (1-based count of steps done)."""
        now = time.perf_counter()
        elapsed = now - self.t0
        done = step - self.start
        self.rate = clips * done / elapsed if elapsed > 0 else 0.0
        if not self.enabled or (not force and now - self.last < self.every):
            return
        self.last = now
        eta = (self.total - step) * elapsed / done if done else math.inf
        epoch = (step - 1) // self.spe + 1
        width = 20
        filled = int(width * step / max(1, self.total))
        bar = "#" * filled + "." * (width - filled)
        terms = " ".join(f"{k} {v:.3g}" for k, v in record.get("terms", {}).items())
        line = (
            f"ep {epoch}/{math.ceil(self.total / self.spe)} [{bar}] {step}/{self.total} "
            f"loss {record.get('loss', math.nan):.4g} | {terms} | {self.rate:.1f} clips/s ETA {_fmt_time(eta)}"
        )
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
