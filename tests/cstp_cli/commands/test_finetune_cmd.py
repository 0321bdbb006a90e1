"""The shared Typer options of ``cstp finetune`` and ``cstp linear`` and the evaluation help texts."""

import inspect

import pytest
from typer.testing import CliRunner

from cstp_cli.cli import build_app
from cstp_cli.commands.finetune_cmd import finetune
from cstp_cli.commands.linear_cmd import linear


def help_text(command: str) -> str:
    result = CliRunner().invoke(build_app(), [command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def test_finetune_and_linear_take_the_same_options():
    assert list(inspect.signature(finetune).parameters) == list(inspect.signature(linear).parameters)


def test_each_command_keeps_its_own_name_and_help():
    assert (finetune.__name__, linear.__name__) == ("finetune", "linear")
    assert "Fine-tune all layers" in help_text("finetune")
    assert "frozen features" in help_text("linear")


@pytest.mark.parametrize("command", ["finetune", "linear", "retrieve", "embed"])
def test_config_help_names_the_toml_table(command):
    assert f"[{command}] table" in help_text(command)


@pytest.mark.parametrize("command", ["finetune", "linear"])
def test_out_help_names_the_command_default_folder(command):
    assert f"runs/{command}-<ckpt>" in help_text(command)
