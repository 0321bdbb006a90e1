"""bench/learning_signal.py (issue 4 item 7): the statistics, the step count and the smoke run."""

import json

import pytest


def runs(values):
    return [{"R@1": v, "R@5": v, "linear": v} for v in values]


def test_a_consistent_gain_counts_and_a_noisy_one_does_not(ls):
    names = list(ls.ROWS)
    results = {names[0]: runs([10, 12, 14]), names[1]: runs([17, 19, 21]), names[2]: runs([30, 2, 14])}
    rows = {r["row"]: r for r in ls.summarise(results)}
    mean, se, counts = rows[names[1]]["gain R@1"]
    assert (mean, se, counts) == (pytest.approx(7.0), pytest.approx(0.0), True)
    mean, se, counts = rows[names[2]]["gain R@1"]
    assert mean == pytest.approx(10 / 3) and se > mean / 2 and counts is False


def test_final_losses_average_the_last_steps_of_each_term(ls, tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    lines = [{"step": i, "terms": {"pace": float(i), "rot": 2.0 * i}} for i in range(1, 101)]
    metrics.write_text("\n".join(json.dumps(x) for x in [{"event": "start"}, *lines]) + "\n")
    assert ls.final_losses(metrics, last=50) == {"pace": pytest.approx(75.5), "rot": pytest.approx(151.0)}


@pytest.mark.parametrize("mode", ["cpu", "gpu", "smoke"])
def test_pretraining_is_given_enough_epochs_for_its_steps(ls, mode, tmp_path):
    m = ls.MODES[mode]
    n_train = m.classes * m.train_per_class
    argv = ls.pretrain_argv(m, tmp_path, ("none", "pace", "none"), 101, tmp_path / "out", n_train)
    epochs = int(argv[argv.index("--epochs") + 1])
    assert epochs * (n_train // m.batch) >= m.steps


@pytest.fixture(scope="module")
def smoke(ls, tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    assert ls.main(["--smoke", "--work", str(root / "work"), "--results", str(root / "results")]) == 0
    return root


def test_smoke_run_reports_every_row_with_its_loss_terms(ls, smoke):
    text = (smoke / "results" / "learning_signal_smoke.md").read_text()
    for name in ls.ROWS:
        assert f"| {name} |" in text
    assert "| pace alone | pace " in text and "stor.temporal" in text
    saved = json.loads((smoke / "results" / "learning_signal_smoke.json").read_text())
    assert set(saved["runs"]) == set(ls.ROWS) and all(len(v) == 2 for v in saved["runs"].values())


def test_rebuild_remakes_the_same_report_without_running_anything(ls, smoke, monkeypatch):
    before = (smoke / "results" / "learning_signal_smoke.md").read_text()
    monkeypatch.setattr(ls, "cstp", lambda argv: pytest.fail(f"rebuild ran cstp {argv[0]}"))
    assert ls.main(["--smoke", "--rebuild", "--work", str(smoke / "work"), "--results", str(smoke / "results")]) == 0
    assert (smoke / "results" / "learning_signal_smoke.md").read_text() == before


def test_rebuild_without_a_finished_work_folder_is_a_usage_error(ls, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        ls.main(["--smoke", "--rebuild", "--work", str(tmp_path / "none"), "--results", str(tmp_path)])
    assert exit_.value.code == 2


@pytest.mark.parametrize("row, part", [("spatial STOR alone", "spatial"), ("temporal STOR alone", "temporal")])
def test_part_rows_train_one_stor_part_with_the_preset_head(ls, row, part, tmp_path):
    m = ls.MODES["cpu"]
    argv = ls.pretrain_argv(m, tmp_path, ls.ROWS[row], 101, tmp_path / "out", m.classes * m.train_per_class)
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert f"stor.parts={part}" in sets and "stor.fusion=profile" in sets


def test_rows_without_stor_get_no_stor_options(ls, tmp_path):
    m = ls.MODES["cpu"]
    argv = ls.pretrain_argv(m, tmp_path, ls.ROWS["pace alone"], 101, tmp_path / "out", m.classes * m.train_per_class)
    assert not any(a.startswith("stor.") for a in argv)


def test_row_selection_keeps_random_init_first_and_only_the_named_rows(ls):
    rows = ls.select_rows(["stor alone", "full default"])
    assert list(rows) == ["random init (BN re-estimated)", "STOR alone", "full default (BYOL+STOR+rot+pace, aug pace,rot)"]
    assert ls.select_rows([]) == ls.ROWS


def test_row_prefix_matching_nothing_is_a_usage_error(ls, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        ls.main(["--smoke", "--row", "nothing like it", "--results", str(tmp_path)])
    assert exit_.value.code == 2
