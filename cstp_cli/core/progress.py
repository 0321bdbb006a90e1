"""The one progress bar of cstp: a line on stderr with done/total, a rate and an honest ETA.

On a terminal it redraws in place (at most ten times a second); elsewhere (logs, CI) it
prints a plain line every ``every_s`` seconds and when asked (``force``), so a log file
grows slowly. Used by cache builds, pretraining, fine-tuning and feature extraction.

The ETA is ``remaining / rate`` where the rate is measured from the *first* update on
(never from construction, and without the items of that first update): start-up work —
spawning workers, building a model, the first CUDA kernels — does not make the estimate lie
for the whole run, and items done before a resume are not counted as if done now. Pauses
between updates (a checkpoint save every ``--checkpoint-every``) stay in the rate: they
recur at the same share of the remaining time, so the ETA includes them.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

__all__ = ["Progress", "format_seconds", "progress_factory"]


def format_seconds(seconds: float) -> str:
    """``75`` → ``"01:15"``, ``3725`` → ``"1:02:05"``; ``"--:--"`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """``desc [####....] done/total unit suffix | rate unit/s ETA mm:ss`` on ``stream``.

    Args:
        total: items to do in all (including ``start``).
        desc: what is being done (``"caching"``, ``"features gallery"``, ...).
        unit: name of an item in the line (``"videos"``, ``"steps"``).
        start: items already done before this run (a resumed build or training run).
        rate_scale, rate_unit: the rate shown is ``rate_scale`` × items per second in
            ``rate_unit`` (a training step of 60 clips: ``rate_scale=60, rate_unit="clips"``).
        every_s: seconds between lines when the stream is not a terminal.
        enabled: False prints nothing.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        unit: str = "",
        start: int = 0,
        rate_scale: float = 1.0,
        rate_unit: str | None = None,
        every_s: float = 10.0,
        enabled: bool = True,
        stream: TextIO | None = None,
    ):
        self.total, self.desc, self.unit = max(0, int(total)), desc, unit
        self.done = self.start = int(start)
        self.rate_scale, self.rate_unit = float(rate_scale), rate_unit or unit or "items"
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = 0.1 if self.tty else float(every_s)
        self._first: tuple[float, int] | None = None  # (time, done) at the first update
        self._last_draw = -math.inf
        self._drawn_done: int | None = None
        self.suffix = ""

    # -- figures
    def rate(self, now: float | None = None) -> float:
        """Items per second since the first update (0 before two updates)."""
        if self._first is None:
            return 0.0
        now = time.perf_counter() if now is None else now
        t0, d0 = self._first
        return (self.done - d0) / (now - t0) if now > t0 and self.done > d0 else 0.0

    def eta(self, now: float | None = None) -> float:
        """Seconds left at the current rate (``inf`` while unknown)."""
        r = self.rate(now)
        return (self.total - self.done) / r if r > 0 else math.inf

    def line(self, now: float | None = None) -> str:
        """The text of the bar as it would be drawn now."""
        width = 24
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        bar = "#" * int(width * frac) + "." * (width - int(width * frac))
        unit = f" {self.unit}" if self.unit else ""
        suffix = f" {self.suffix}" if self.suffix else ""
        rate = self.rate(now) * self.rate_scale
        return f"{self.desc} [{bar}] {self.done}/{self.total}{unit}{suffix} | {rate:.1f} {self.rate_unit}/s ETA {format_seconds(self.eta(now))}"

    # -- drawing
    def update(self, n: int = 1, *, done: int | None = None, suffix: str | None = None, force: bool = False) -> None:
        """Count ``n`` more items (or set ``done``), optionally change the suffix, redraw if due."""
        now = time.perf_counter()
        self.done = int(done) if done is not None else self.done + int(n)
        if self._first is None:  # the rate counts from here: start-up and the first items excluded
            self._first = (now, self.done)
        if suffix is not None:
            self.suffix = suffix
        finished = self.total and self.done >= self.total
        if self.enabled and (force or finished or now - self._last_draw >= self.every):
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._last_draw, self._drawn_done = now, self.done
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line(now))
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final state once more and end the line."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            self._draw(now)
            self.stream.write("\n")
        elif self._first is not None and self._drawn_done != self.done:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()


def progress_factory(enabled: bool = True, unit: str = ""):
    """``(total, desc) -> Progress``, for library functions that open bars of their own."""
    return lambda total, desc: Progress(total, desc, unit=unit, enabled=enabled)
