"""Settings of the evaluation commands: presets, layering, validation and generated help."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cstp_cli.cli import build_app
from cstp_cli.errors import UsageError
from cstp_cli.evaluation.settings import (EmbedSettings, FinetuneSettings, LinearSettings, RetrievalSettings,
                                          eval_preset_names)


def test_every_evaluation_preset_loads_for_every_command():
    names = eval_preset_names()
    assert {"ucf101-r21d-byol", "ucf101-c3d-byol", "k400-r21d-byol"} <= set(names)
    for name in names:
        assert FinetuneSettings.layered(preset=name).split == "1,2,3"
        assert LinearSettings.layered(preset=name, flags={"lr": 0.5}).lr == 0.5  # flags win
        assert RetrievalSettings.layered(preset=name).clip_l2 is True


def test_an_eval_prefix_names_the_same_preset():
    assert FinetuneSettings.layered(preset="eval-ucf101-r21d-byol") == FinetuneSettings.layered(preset="ucf101-r21d-byol")


def test_an_unknown_preset_lists_the_shipped_ones():
    with pytest.raises(UsageError, match="unknown evaluation preset 'nope'; presets: .*ucf101-r21d-byol"):
        RetrievalSettings.layered(preset="nope")


def test_layers_are_defaults_then_preset_then_config_then_flags(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[finetune]\nepochs = 7\nlr = 0.1\n[linear]\nepochs = 3\n')
    s = FinetuneSettings.layered(preset="ucf101-r21d-byol", config=cfg, flags={"lr": 0.5, "epochs": None})
    assert (s.workers, s.epochs, s.lr, s.batch_size) == (8, 7, 0.5, 60)  # preset, config, flag, default
    assert LinearSettings.layered(config=cfg).epochs == 3  # each command reads its own table


def test_each_command_reads_only_its_own_table(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[embed]\nwhich = "test"\n[retrieve]\nstride = 2\n')
    assert EmbedSettings.layered(config=cfg).which == "test" and EmbedSettings.layered(config=cfg).stride == 1
    assert RetrievalSettings.layered(config=cfg).stride == 2


@pytest.mark.parametrize("cls, flags, flag", [
    (RetrievalSettings, {"layer": "conv4"}, "--layer"),
    (EmbedSettings, {"which": "val"}, "--which"),
    (FinetuneSettings, {"head": "mlp"}, "--head"),
    (FinetuneSettings, {"epochs": 0}, "--epochs"),
    (FinetuneSettings, {"split": "1,x"}, "--split"),
    (LinearSettings, {"size": "big"}, "--size"),
])
def test_bad_values_are_one_line_usage_errors_naming_the_flag(cls, flags, flag):
    with pytest.raises(UsageError, match=flag) as info:
        cls.layered(flags=flags)
    assert "\n" not in str(info.value)


def test_augment_names_drop_none_and_blanks():
    assert FinetuneSettings(augment="pace, none,,rot").augment_list == ["pace", "rot"]
    assert FinetuneSettings().augment_list == []


@pytest.mark.parametrize("command, cls", [("finetune", FinetuneSettings), ("linear", LinearSettings),
                                          ("retrieve", RetrievalSettings), ("embed", EmbedSettings)])
def test_help_shows_the_declared_default_of_every_flag(command, cls):
    result = CliRunner().invoke(build_app(), [command, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for name in cls.flag_names():
        assert cls.help_text(name) in text, name  # the help line with "(default: <declared>)"
    assert f"(default: {cls().clip_size or 'none'})" in text and "(default: auto)" in text
