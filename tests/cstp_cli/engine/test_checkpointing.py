"""When checkpoints are written: the ``--checkpoint-every`` cadence (issue 13 item 7)."""

from __future__ import annotations

from cstp_cli.engine.checkpointing import Cadence


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_time_cadence_is_due_that_long_after_the_last_save():
    clock = Clock()
    cadence = Cadence("10m", steps_per_epoch=3, clock=clock)
    clock.now += 599
    assert not cadence.due(1)
    clock.now += 1
    assert cadence.due(2)
    cadence.saved()
    clock.now += 300
    assert not cadence.due(3)  # restarts at the save


def test_a_step_cadence_is_due_at_global_multiples_so_a_resumed_run_keeps_them():
    cadence = Cadence("500steps", steps_per_epoch=7)
    assert [s for s in range(1, 1601) if cadence.due(s)] == [500, 1000, 1500]


def test_an_epoch_cadence_counts_steps_per_epoch():
    cadence = Cadence("2epochs", steps_per_epoch=3)
    assert [s for s in range(1, 13) if cadence.due(s)] == [6, 12]


def test_end_is_never_due_between_steps():
    clock = Clock()
    cadence = Cadence("end", steps_per_epoch=1, clock=clock)
    clock.now += 1e9
    assert not any(cadence.due(s) for s in range(1, 100))
