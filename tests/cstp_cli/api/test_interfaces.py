"""The plugin API's own behaviour (cstp_cli/api/): option types, the base classes, the package's lazy torch names."""

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


def test_old_option_spelling_maps_to_its_new_value_with_a_deprecation_note():
    opt = Option("denominator", "str", "standard", "h", choices=("standard", "cstp-eq1"), aliases={"paper": "cstp-eq1"})
    with pytest.warns(FutureWarning, match="denominator=paper is deprecated; write denominator=cstp-eq1"):
        assert opt.parse("paper") == "cstp-eq1"
    with pytest.raises(ValueError, match="must be one of standard, cstp-eq1"):
        opt.parse("papers")


def test_importing_the_api_needs_no_torch():
    import subprocess
    import sys

    code = "import sys, cstp_cli.api, cstp_cli.hookspecs; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_contrastive_scheme_is_an_nn_module():
    assert issubclass(ContrastiveScheme, torch.nn.Module)


def test_api_unwrap_is_the_cores_and_strips_wrappers():
    from cstp_cli.api import unwrap
    from cstp_cli.core import dist

    inner = torch.nn.Linear(2, 2)
    assert unwrap(torch.nn.DataParallel(inner)) is inner and dist.unwrap(inner) is inner
    import cstp_plugins.contrastive.common as common

    assert common.unwrap is unwrap


def test_task_describes_nothing_by_default():
    task = PretextTask()
    assert (task.mode_tag, task.plan_info(), task.label_classes(), task.shared) == (None, {}, {}, frozenset())
