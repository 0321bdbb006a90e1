"""bench/synth_frames.py: the frame statistics behind the built-in set's version 4 (issue 12 item 4)."""

from __future__ import annotations

from cstp_cli.data import synth


def test_rigid_background_of_version_3_has_no_camera_compensated_change(frames):
    sf = frames
    with sf.version_3():
        stats = sf.measure(2)
    assert all(stats[f"background {d} apart, camera-compensated"] == 0 for d in sf.OFFSETS)
    assert stats["frames 13 apart"] > 0


def test_changing_background_grows_apart_with_the_offset(frames):
    sf = frames
    stats = sf.measure(2)
    change = [stats[f"background {d} apart, camera-compensated"] for d in sf.OFFSETS]
    assert 0 < change[0] < change[1] < change[2]


def test_version_3_rendering_is_undone_on_exit(frames):
    sf = frames
    grain, mottle = synth.GRAIN, synth.mottle
    with sf.version_3():
        assert synth.GRAIN == 0.2
    assert (synth.GRAIN, synth.mottle) == (grain, mottle)
