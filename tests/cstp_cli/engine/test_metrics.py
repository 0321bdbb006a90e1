"""The loss plot: drawn off the training thread, with each term's chance level (issue 13 items 7, 9)."""

from __future__ import annotations

import json
import math

import pytest

from cstp_cli.engine import metrics


def write_metrics(path, steps=12):
    lines = [{"step": s, "loss": 4.0 - 0.1 * s, "terms": {"stor.spatial": 1.6, "rot": 2.7}} for s in range(1, steps + 1)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_chance_levels_come_from_each_active_task(tiny_config):
    from cstp_cli.engine import loop

    cfg = tiny_config()
    cfg.sets = {"stor": {"candidates": "4"}}
    run = loop.setup(cfg)
    levels = metrics.chance_levels(run.objective)
    assert levels == pytest.approx({
        "stor.spatial": math.log(4), "stor.temporal": math.log(4),  # one n-way CE each
        "rot": 2 * math.log(4),  # a 4-way CE per clip, both clips summed
        "pace": 2 * math.log(2),  # pace.rates=1,2: 2-way per clip
    })


def test_a_component_without_chance_loss_contributes_nothing():
    class Entry:
        def __init__(self, name, task, augment_only=False):
            self.name, self.task, self.augment_only = name, task, augment_only

    class Task:
        chance_loss = {"a": 1.0}

    class Broken:
        @property
        def chance_loss(self):
            raise RuntimeError("boom")

    class Objective:
        entries = [Entry("x", Task()), Entry("y", object()), Entry("z", Broken()), Entry("w", Task(), augment_only=True)]
        scheme = None

    assert metrics.chance_levels(Objective()) == {"x.a": 1.0}


def test_the_plot_draws_a_dashed_chance_line_per_term(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    drawn = []
    original = Axes.axhline

    def recording(self, y=0, *args, **kwargs):
        drawn.append((round(y, 4), kwargs.get("label")))
        return original(self, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "axhline", recording)
    png = metrics.plot_losses(write_metrics(tmp_path / "m.jsonl"), tmp_path / "loss.png",
                              {"stor.spatial": math.log(5), "rot": 2 * math.log(4), "absent": 1.0})
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert drawn == [(round(math.log(5), 4), "stor.spatial at chance (1.61)"), (round(2 * math.log(4), 4), "rot at chance (2.77)")]


def test_the_plotter_coalesces_requests_and_finish_waits_for_them(tmp_path, monkeypatch):
    import threading

    gate = threading.Event()
    calls = []
    original = metrics.plot_losses

    def slow(*args, **kwargs):
        calls.append(threading.current_thread().name)
        gate.wait(5)
        return original(*args, **kwargs)

    monkeypatch.setattr(metrics, "plot_losses", slow)
    plotter = metrics.LossPlotter(write_metrics(tmp_path / "m.jsonl"), tmp_path / "loss.png")
    for _ in range(5):
        plotter.request()  # returns at once: the training thread never waits for a drawing
    assert len(calls) <= 1
    gate.set()
    assert plotter.finish() == tmp_path / "loss.png"
    assert calls == ["cstp-loss-plot", "cstp-loss-plot", threading.main_thread().name]  # 5 requests → 2 background draws


def test_a_failing_plot_warns_once_and_never_stops_the_run(tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr(metrics, "plot_losses", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    plotter = metrics.LossPlotter(tmp_path / "m.jsonl", tmp_path / "loss.png", warn=warnings.append)
    plotter.request()
    assert plotter.finish() is None
    assert warnings == [f"warning: could not draw {tmp_path / 'loss.png'}: OSError: disk full"]
