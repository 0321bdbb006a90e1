"""``cstp data pairs`` end to end on a tiny cache (issue 3 item 2)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cstp_cli.data.cache import build_cache
from cstp_cli.cli import build_app, main


@pytest.fixture
def tiny_cache(tiny_ucf_root, tmp_path):
    """A 6-video cache of 6-frame 32×24 clips (shorter than a 16-frame clip)."""
    return build_cache(tiny_ucf_root, out=tmp_path / "tiny.h5", size=(32, 24), workers=0, progress=False).path


def run(*args):
    return CliRunner().invoke(build_app(), ["data", "pairs", *map(str, args)])


def test_writes_schema_one_plans_the_report_and_a_picture(tiny_cache, tmp_path):
    out, png = tmp_path / "pairs.jsonl", tmp_path / "pairs.png"
    result = run(tiny_cache, "-n", 30, "-o", out, "--png", png, "--frames", 4)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 30
    assert {r["schema"] for r in records} == {1} and {r["mode"] for r in records} == {"clean"}
    assert all(r["frame_wh"] == [32, 24] and r["num_frames"] == 6 and len(r["idx"][0]) == 4 for r in records)
    assert set(records[0]["labels"]) == {"stor.spatial", "stor.temporal", "pace.rate", "rot.clips"}
    assert {r["video"].split("/")[0] for r in records} == {"Jump", "Run", "Wave"}
    for needle in ("30 plans", "stor.spatial", "mutual information", "box area alone"):
        assert needle in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reference_sampling_with_options_and_short_clips_loop(tiny_cache, tmp_path):
    out = tmp_path / "ref.jsonl"
    result = run(tiny_cache, "-n", 12, "-o", out, "--sampling", "reference", "--set", "stor.candidates=3", "--pretext", "stor", "--augment", "none")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["mode"] for r in records} == {"reference"}
    assert records[0]["candidates"] == ["1", "2/3", "1/3"]
    assert all(set(r["labels"]) == {"stor.spatial", "stor.temporal"} for r in records)
    assert all(r["idx"][0] == r["idx"][1] == [i % 6 for i in range(16)] for r in records)  # T = 16 > 6 frames


def test_unknown_option_is_a_usage_error_of_one_line(tiny_cache, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["data", "pairs", str(tiny_cache), "-n", "2", "--set", "stor.bogus=1"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "bogus" in err and "candidates" in err and len(err.splitlines()) == 1


def test_temporal_only_stor_plans_keep_crop_flip_and_colour_the_same(tiny_cache, tmp_path):
    out = tmp_path / "t.jsonl"
    result = run(tiny_cache, "-n", 12, "-o", out, "--frames", 4, "--pretext", "stor", "--augment", "none", "--set", "stor.parts=temporal")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all({"boxes", "flip", "photometric"} <= set(r["same"]) for r in records)
    assert "crop 100.0%, flip 100.0%, colour 100.0%" in result.output


def test_unwritable_out_is_refused_before_any_plan(tiny_cache, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run(tiny_cache, "-n", 5, "-o", blocker / "pairs.jsonl")
    assert result.exit_code != 0 and "plans" not in result.output


def test_output_under_a_file_is_one_usage_line_before_opening_data(tmp_path, monkeypatch, capsys):
    from cstp_cli.data import resolve

    monkeypatch.setattr(resolve, "resolve_data", lambda *a, **k: pytest.fail("opened the data before checking -o"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as done:
        main(["data", "pairs", "no-such-data", "-o", str(blocker / "pairs.jsonl")])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1 and "a-file is a file, not a folder; choose another -o" in err
