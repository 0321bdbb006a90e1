"""The plugin API's own behaviour: option types and the defaults of the base classes."""

from __future__ import annotations

import pytest
import torch

from cstp_cli.api import ContrastiveScheme, Option, PretextTask
from cstp_cli.errors import PluginError


def test_option_of_unknown_type_is_refused_where_it_is_declared():
    with pytest.raises(ValueError, match="unknown type 'dict'"):
        Option("depth", "dict", {}, "a mapping")


@pytest.mark.parametrize(
    "kind, given, expected",
    [("int", "4", 4), ("float", "0.5", 0.5), ("bool", "off", False), ("list[int]", "1,2,4", [1, 2, 4]),
     ("list[int]", [8], [8]), ("list[str]", "spatial, temporal", ["spatial", "temporal"])],
)
def test_option_parses_command_line_and_toml_values(kind, given, expected):
    assert Option("x", kind, None, "h").parse(given) == expected


def test_option_outside_its_choices_names_them():
    with pytest.raises(ValueError, match="must be one of both, first"):
        Option("clips", "str", "both", "h", choices=("both", "first")).parse("last")


def test_task_without_head_asks_to_be_an_augmentation():
    class Reverse(PretextTask):
        name = "reverse"

    task = Reverse()
    with pytest.raises(PluginError, match="name it in --augment"):
        task.head(8)
    with pytest.raises(PluginError, match="has no loss"):
        task.loss(None, None, {}, None)


def test_scheme_without_forward_is_a_plugin_error():
    class Empty(ContrastiveScheme):
        pass

    with pytest.raises(PluginError, match="Empty does not implement forward"):
        Empty()(torch.zeros(1, 2), torch.zeros(1, 2), None, None)


def test_pretext_head_is_linear_bn_relu_linear_to_logits():
    import torch

    from cstp_cli.api import pretext_head

    head = pretext_head(6, 8, 3)
    assert [type(m).__name__ for m in head] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert head(torch.randn(4, 6)).shape == (4, 3)
