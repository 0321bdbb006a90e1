"""The one progress bar: done/total, rate from the first update, honest ETA, quiet when off."""

from __future__ import annotations

import io

from cstp_cli.core.progress import Progress, format_seconds


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _bar(monkeypatch, total=10, **kw):
    clock = _Clock()
    monkeypatch.setattr("cstp_cli.core.progress.time.perf_counter", clock)
    stream = io.StringIO()
    return Progress(total, "work", unit="videos", stream=stream, every_s=0.0, **kw), clock, stream


def test_line_shows_description_done_total_and_unit(monkeypatch):
    bar, clock, stream = _bar(monkeypatch)
    bar.update(3)
    assert "work [" in stream.getvalue() and "3/10 videos" in stream.getvalue()


def test_rate_and_eta_count_from_the_first_update_not_from_construction(monkeypatch):
    bar, clock, _ = _bar(monkeypatch)
    clock.now += 60.0  # a minute of start-up before the first item
    bar.update(1)
    clock.now += 4.0
    bar.update(4)  # 4 items in 4 s since the first update
    assert bar.rate() == 1.0
    assert bar.eta() == 5.0  # 5 items left at 1/s, the start-up minute is not extrapolated


def test_resumed_items_do_not_count_as_done_now(monkeypatch):
    bar, clock, _ = _bar(monkeypatch, start=8)
    bar.update(0)
    clock.now += 2.0
    bar.update(1)
    assert bar.rate() == 0.5 and bar.eta() == 2.0


def test_rate_scale_reports_clips_per_second_for_steps(monkeypatch):
    bar, clock, stream = _bar(monkeypatch, rate_scale=60, rate_unit="clips")
    bar.update(0)
    clock.now += 1.0
    bar.update(2)
    assert "120.0 clips/s" in stream.getvalue()


def test_eta_is_unknown_before_any_progress(monkeypatch):
    bar, _, _ = _bar(monkeypatch)
    assert "ETA --:--" in bar.line()


def test_disabled_bar_prints_nothing(monkeypatch):
    bar, _, stream = _bar(monkeypatch, enabled=False)
    bar.update(5)
    bar.close()
    assert stream.getvalue() == ""


def test_close_prints_the_final_state_once(monkeypatch):
    bar, clock, stream = _bar(monkeypatch)
    bar.every = 1e9
    bar.update(2)  # drawn (first update is due)
    bar.update(3)  # not due
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[-1].count("5/10") == 1 and len(lines) == 2


def test_suffix_is_kept_until_replaced(monkeypatch):
    bar, _, stream = _bar(monkeypatch)
    bar.update(1, suffix="2 failed")
    bar.update(1)
    assert stream.getvalue().splitlines()[-1].count("2 failed") == 1


def test_format_seconds():
    assert format_seconds(75) == "01:15" and format_seconds(3725) == "1:02:05" and format_seconds(float("inf")) == "--:--"


def test_pauses_between_updates_such_as_checkpoint_saves_count_in_the_eta(monkeypatch):
    bar, clock, _ = _bar(monkeypatch, total=20)
    bar.update(1)
    for step in range(2, 11):
        clock.now += 1.0 + (8.0 if step == 6 else 0.0)  # steps of 1 s, one 8 s checkpoint save after step 5
        bar.update(1)
    assert bar.rate() == 9 / 17  # 9 steps in 17 s, the save included
    assert bar.eta() == 10 / (9 / 17)  # the remaining 10 steps at that rate (saves recur at the same share)
