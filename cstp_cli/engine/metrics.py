"""Training metrics: ``metrics.jsonl`` (one object per step), ``loss.png`` and the progress line.

``loss.png`` is redrawn only when a checkpoint is written, in a background thread
(:class:`LossPlotter`), with each term's chance level (:func:`chance_levels`) dashed.

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
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

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


def plot_losses(metrics_path: str | Path, png_path: str | Path, chance: Mapping[str, float] | None = None) -> Path | None:
    """Draw the total loss and every raw term against the step into ``png_path`` (atomic).

    ``chance``: term name → the term's value at chance (``ln K`` for a K-way classification
    term), drawn as a dashed line in the term's colour, so a term that never leaves its line
    is visibly not learning. Uses matplotlib's object API (no pyplot state), so it can run in
    the :class:`LossPlotter` thread.
    """
    records = read_metrics(metrics_path)
    if not records:
        return None
    from matplotlib.figure import Figure

    steps = [r["step"] for r in records]
    series = {"loss (total)": [r["loss"] for r in records]}
    for name in records[-1].get("terms", {}):
        series[name] = [r.get("terms", {}).get(name, math.nan) for r in records]
    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.subplots()
    for name, values in series.items():
        (line,) = ax.plot(steps, _smooth(values), label=name, linewidth=2.0 if name == "loss (total)" else 1.0)
        level = (chance or {}).get(name)
        if level is not None and math.isfinite(level) and level > 0:
            ax.axhline(level, color=line.get_color(), linestyle="--", linewidth=0.8, alpha=0.7,
                       label=f"{name} at chance ({level:.3g})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (raw terms; moving average)")
    ax.set_yscale("log" if all(v > 0 for vs in series.values() for v in vs if v == v) else "linear")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    png_path = Path(png_path)
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp)
    return png_path


def chance_levels(objective: Any) -> dict[str, float]:
    """Term name → loss at chance, from the optional ``chance_loss`` of each task and the scheme.

    ``chance_loss`` (an attribute, property or method of a :class:`~cstp_cli.api.PretextTask`
    or scheme) maps the names of the terms its ``loss`` returns to their value when the head
    guesses uniformly (``ln K`` for K classes, times the clips it sums over). Components
    without one contribute nothing; a broken one is skipped (a plot must never stop a run).
    """
    from cstp_cli.engine.objective import _prefixed

    owners = [(e.name, e.task) for e in getattr(objective, "entries", []) if not e.augment_only]
    if getattr(objective, "scheme", None) is not None:
        owners.append((objective.scheme_name, objective.scheme))
    out: dict[str, float] = {}
    for owner, component in owners:
        try:
            levels = getattr(component, "chance_loss", None)
            levels = levels() if callable(levels) else levels
            for key, value in dict(levels or {}).items():
                out[_prefixed(owner, str(key))] = float(value)
        except Exception:  # noqa: BLE001 - an optional plotting hint of a plugin
            continue
    return out


class LossPlotter:
    """Redraws ``loss.png`` off the training thread (issue 13 item 7: plot off the hot path).

    :meth:`request` starts a background redraw (or marks one pending while one runs);
    :meth:`finish` waits for it and draws the final plot. A failing redraw never stops the
    run: it is reported once through ``warn``.
    """

    def __init__(self, metrics_path: str | Path, png_path: str | Path, chance: Mapping[str, float] | None = None,
                 warn: Callable[[str], None] | None = None):
        self.metrics_path, self.png_path = Path(metrics_path), Path(png_path)
        self.chance = dict(chance or {})
        self.warn = warn
        self.drawn: Path | None = None
        self._lock = threading.Lock()
        self._pending = False
        self._thread: threading.Thread | None = None
        self._warned = False

    def _draw(self) -> None:
        try:
            self.drawn = plot_losses(self.metrics_path, self.png_path, self.chance) or self.drawn
        except Exception as exc:  # noqa: BLE001 - the plot is a convenience, the run goes on
            if self.warn is not None and not self._warned:
                self._warned = True
                self.warn(f"warning: could not draw {self.png_path}: {type(exc).__name__}: {exc}")

    def _loop(self) -> None:
        while True:
            self._draw()
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return
                self._pending = False

    def request(self) -> None:
        """Redraw in the background (coalesced: at most one redraw runs, one more waits)."""
        with self._lock:
            if self._thread is not None:
                self._pending = True
                return
            self._thread = threading.Thread(target=self._loop, name="cstp-loss-plot", daemon=True)
            self._thread.start()

    def wait(self) -> None:
        """Wait for a background redraw in flight."""
        while True:
            with self._lock:
                thread = self._thread
            if thread is None:
                return
            thread.join()

    def finish(self) -> Path | None:
        """Wait for any background redraw, then draw the final plot; its path (None: no records)."""
        self.wait()
        self._draw()
        return self.drawn


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
