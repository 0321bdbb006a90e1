"""Evaluation reports: tables, JSON, the retrieval montage, the progress bar."""

from __future__ import annotations

import json

import numpy as np

from cstp_cli.evaluation import reports


def test_table_has_a_header_a_rule_and_formatted_rows():
    text = reports.format_table([{"split": "1", "R@1": 12.345}], ("split", "R@1"))
    lines = text.splitlines()
    assert len(lines) == 3 and lines[0].startswith("| split") and set(lines[1]) <= {"|", "-"}
    assert "12.35" in lines[2]


def test_json_is_written_atomically_with_numpy_values(tmp_path):
    path = reports.write_json(tmp_path / "sub" / "r.json", {"a": np.float32(1.5), "b": np.arange(2)})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1]}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary file left


def test_montage_is_a_png_with_one_row_per_query(tmp_path):
    frame = np.zeros((16, 20, 3), np.uint8)
    path = reports.retrieval_montage(
        tmp_path / "m.png", [frame, frame], [0, 1], [[frame] * 5, [frame] * 5], [[0, 1, 0, 1, 0], [0, 0, 0, 0, 1]],
        classes=["a", "b"], scores=[[0.9] * 5, [0.8] * 5],
    )
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.shape[0] < img.shape[1]  # 2 rows of 6 panels: wider than tall

