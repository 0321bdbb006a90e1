"""The shared parsers: sizes, fold lists, --set items and TOML files (one home each)."""

from __future__ import annotations

import pytest

from cstp_cli.core.options import (format_size, parse_sets, parse_size, parse_splits, positive_problem, read_toml,
                                   size_problem, splits_problem)
from cstp_cli.errors import UsageError


@pytest.mark.parametrize("text, size", [("171x128", (171, 128)), ("64X48", (64, 48)), (" 341×256 ", (341, 256)), ((32, 24), (32, 24))])
def test_parse_size_reads_width_then_height(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["171", "171by128", "x128", "171x128x3", "axb"])
def test_parse_size_refuses_text_that_is_not_width_x_height(text):
    with pytest.raises(UsageError, match="--size expects WIDTHxHEIGHT"):
        parse_size(text)


@pytest.mark.parametrize("text", ["0x128", "171x0", "9000x128"])
def test_parse_size_refuses_sides_out_of_range(text):
    with pytest.raises(UsageError, match="between 1 and 8192"):
        parse_size(text)


def test_parse_size_names_the_flag_it_parses():
    with pytest.raises(UsageError, match="--frame-size expects"):
        parse_size("big", flag="--frame-size")


def test_format_size_is_the_inverse_of_parse_size():
    assert parse_size(format_size((171, 128))) == (171, 128)


@pytest.mark.parametrize("text, folds", [("1", [1]), ("1,2,3", [1, 2, 3]), (2, [2]), ([1, 3], [1, 3])])
def test_parse_splits_reads_fold_lists(text, folds):
    assert parse_splits(text) == folds


@pytest.mark.parametrize("text", ["", "one", "1,x"])
def test_parse_splits_refuses_what_is_not_a_fold_list(text):
    with pytest.raises(UsageError, match="--split"):
        parse_splits(text)


def test_set_parses_component_option_value():
    assert parse_sets(["stor.candidates=4", "byol.momentum=cosine"]) == {"stor": {"candidates": "4"}, "byol": {"momentum": "cosine"}}


@pytest.mark.parametrize("item", ["candidates=4", "stor.candidates", ".x=1", "stor.=1"])
def test_set_refuses_items_without_component_option_and_value(item):
    with pytest.raises(UsageError, match="COMPONENT.OPTION=VALUE"):
        parse_sets([item])


def test_read_toml_gives_one_line_for_a_missing_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_toml(tmp_path / "nope.toml")


def test_read_toml_gives_one_line_for_invalid_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        read_toml(bad)


def test_read_toml_refuses_a_folder(tmp_path):
    with pytest.raises(UsageError, match="is a folder"):
        read_toml(tmp_path)


def test_setting_checks_name_the_problem_or_pass():
    assert size_problem("171x128") is None and "WIDTHxHEIGHT" in size_problem("big")
    assert splits_problem("1,2,3") is None and splits_problem(2) is None and "fold numbers" in splits_problem("1,x")
    assert positive_problem(0.1) is None and "positive" in positive_problem(0)
