"""The settings library: one declaration per key, four layers, help from the declarations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cstp_cli.core.settings import Extra, Settings, command, setting
from cstp_cli.errors import UsageError


@dataclass
class Inner(Settings):
    WHAT = "inner"
    mode: str = setting("a", "The mode.", choices=("a", "b"))


@dataclass
class Demo(Settings):
    WHAT = "demo"
    TABLE = "demo"
    epochs: int = setting(10, "Epochs.", minimum=1)
    lr: float = setting(0.1, "Learning rate.")
    fast: bool = setting(False, "Go fast.")
    hidden: str = setting("x", "Only in files.", flag=False)
    inner: Inner = setting(None, "A sub-table.", kind="sub")
    parts: dict = setting({}, "Component tables.", kind="table", flag=False)

    def __post_init__(self) -> None:
        if self.inner is None:
            self.inner = Inner()
        elif isinstance(self.inner, dict):
            self.inner = Inner.from_dict(self.inner)


@pytest.fixture
def presets(tmp_path, monkeypatch):
    (tmp_path / "quick.toml").write_text('description = "q"\n[demo]\nepochs = 2\nfast = true\n[demo.inner]\nmode = "b"\n')
    monkeypatch.setattr(Demo, "PRESETS", tmp_path)
    return tmp_path


def test_defaults_come_from_the_declarations():
    d = Demo.layered()
    assert (d.epochs, d.lr, d.fast, d.inner.mode) == (10, 0.1, False, "a")


def test_layers_apply_preset_then_file_then_flags(presets, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text("[demo]\nepochs = 5\nlr = 0.5\n")
    d = Demo.layered(preset="quick", config=cfg, flags={"lr": 0.7, "epochs": None})
    assert (d.epochs, d.lr, d.fast, d.inner.mode) == (5, 0.7, True, "b")


def test_component_tables_merge_one_level_deep(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text("[demo.parts.stor]\nn = 4\n")
    d = Demo.layered(config=cfg, flags={"parts": {"stor": {"m": 1}}})
    assert d.parts == {"stor": {"n": 4, "m": 1}}


def test_unknown_keys_name_the_source_and_the_known_settings(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text("[demo]\nepoch = 5\n")
    with pytest.raises(UsageError, match=r"config .*run.toml: unknown demo setting \[demo\] 'epoch' \(settings: epochs, lr"):
        Demo.layered(config=cfg)


def test_unknown_preset_lists_the_presets(presets):
    with pytest.raises(UsageError, match="unknown preset 'slow'; presets: quick"):
        Demo.layered(preset="slow")


def test_validation_names_the_flag():
    with pytest.raises(UsageError, match="--epochs must be at least 1, got 0"):
        Demo.layered(flags={"epochs": 0})
    with pytest.raises(UsageError, match="--mode must be one of a, b"):
        Demo.layered(flags={"inner": {"mode": "c"}})


def test_flags_of_sub_tables_are_flat_on_the_command_line():
    assert Demo.flag_names() == ["epochs", "lr", "fast", "mode"]
    assert Demo.flags_to_values({"mode": "b", "lr": None, "epochs": 3}) == {"inner": {"mode": "b"}, "epochs": 3}


def test_help_shows_the_default_and_what_a_bare_run_uses(presets):
    assert Demo.help_text("lr") == "Learning rate. (default: 0.1)"
    assert Demo.help_text("epochs", bare_preset="quick") == "Epochs. (default: 10; bare run, preset quick: 2)"
    assert Demo.help_text("mode", bare_preset="quick") == "The mode. (default: a; bare run, preset quick: b)"
    assert Demo.help_text("lr", bare_preset="quick") == "Learning rate. (default: 0.1)"  # the preset keeps it


def test_command_gives_one_typer_option_per_flag_and_calls_with_them():
    seen: dict[str, Any] = {}

    @command(Demo, before=(Extra("name", Any),), after=(Extra("quiet", bool, False),))
    def run(*, name: str | None, quiet: bool, flags: dict[str, Any]) -> None:
        seen.update(name=name, quiet=quiet, flags=flags)

    app = typer.Typer()
    app.command()(run)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["run", "--epochs", "3", "--fast", "--mode", "b"])
    assert result.exit_code == 0, result.output
    assert seen["flags"] == {"epochs": 3, "lr": None, "fast": True, "mode": "b"} and seen["quiet"] is False
    assert "Epochs. (default: 10)" in CliRunner().invoke(app, ["run", "--help"], terminal_width=200).output
