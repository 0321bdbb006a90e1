"""Objective assembly: names, weights, options, usage errors (METHOD §1)."""

from __future__ import annotations

import pytest
import torch

from cstp_cli.engine.objective import build_objective, parse_selection
from cstp_cli.errors import PluginError, UsageError

D = 16
SMALL = {"byol": {"proj_hidden": 16, "pred_hidden": 16}}


def build(contrastive="byol", pretext="stor,rot,pace", augment="pace,rot", sets=None, pretext_options=None):
    return build_objective(parse_selection(contrastive, pretext, augment), D, sets=sets,
                           contrastive_options=SMALL, pretext_options=pretext_options)


def test_default_weights_follow_method_section_1():
    obj = build()
    assert obj.weights() == {"byol": 0.1, "stor": 1.0, "rot": 1.0, "pace": 1.0}
    assert [e.name for e in obj.entries] == ["stor", "rot", "pace"]
    assert set(obj.heads) == {"stor", "rot", "pace"}


def test_weights_given_with_name_equals_value():
    obj = build(contrastive="byol=0.5", pretext="stor=2,rot=0")
    assert obj.weights() == {"byol": 0.5, "stor": 2.0, "rot": 0.0}


def test_augment_only_task_has_no_head_and_is_flagged():
    obj = build(pretext="stor", augment="pace,rot")
    flags = {e.name: e.augment_only for e in obj.entries}
    assert flags == {"stor": False, "pace": True, "rot": True}
    assert all(getattr(t, "augment_only") == flags[t.name] for t in obj.tasks)
    assert set(obj.heads) == {"stor"}
    assert "pace" not in obj.weights()


def test_set_reaches_task_options_and_overrides_config_tables():
    obj = build(sets={"stor": {"decorrelate": "true"}}, pretext_options={"stor": {"decorrelate": False, "candidates": 4}})
    stor = next(t for t in obj.tasks if t.name == "stor")
    assert stor.options["decorrelate"] is True and stor.options["candidates"] == 4


def test_unknown_option_is_a_usage_error_listing_the_options():
    with pytest.raises(UsageError, match="stor has no option 'bogus'.*candidates"):
        build(sets={"stor": {"bogus": "1"}})


def test_set_on_an_inactive_component_is_a_usage_error():
    with pytest.raises(UsageError, match="'moco' is not an active component"):
        build(sets={"moco": {"queue": "64"}})


def test_unknown_pretext_lists_installed_ones():
    with pytest.raises(PluginError, match="unknown pretext 'jigsaw'; installed: .*pace.*rot.*stor"):
        build(pretext="jigsaw")


def test_nothing_to_learn_from_is_a_usage_error():
    with pytest.raises(UsageError, match="nothing to learn from") as info:
        build(contrastive="none", pretext="none", augment="pace,rot")
    assert info.value.exit_code == 2


@pytest.mark.parametrize("args, message", [
    (("byol,moco", "stor", ""), "one scheme"),
    (("byol", "stor=x", ""), "must be a number"),
    (("byol", "stor,stor", ""), "twice"),
    (("byol", "stor", "rot=1"), "names only"),
])
def test_malformed_selection_is_a_usage_error(args, message):
    with pytest.raises(UsageError, match=message):
        parse_selection(*args)


def test_forward_logs_raw_weighted_stats_and_total():
    torch.manual_seed(0)
    obj = build(contrastive="byol=0.1", pretext="rot=0.5,pace", augment="")
    obj.scheme.attach(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 2 * 8 * 8, D)))
    y1, y2 = torch.randn(4, D), torch.randn(4, D)
    x1, x2 = torch.randn(4, 3, 2, 8, 8), torch.randn(4, 3, 2, 8, 8)
    labels = {"rot.clips": torch.randint(0, 4, (4, 2)), "pace.rate": torch.randint(0, 4, (4,))}
    loss, logs = obj(y1, y2, x1, x2, labels)
    assert {k for k in logs if k.startswith("terms/")} == {"terms/byol", "terms/rot", "terms/pace"}
    assert torch.allclose(logs["weighted/rot"], 0.5 * logs["terms/rot"])
    assert torch.allclose(logs["weighted/byol"], 0.1 * logs["terms/byol"])
    assert "stats/byol.std" in logs
    total = sum(v for k, v in logs.items() if k.startswith("weighted/"))
    assert torch.allclose(loss, total)


def test_options_are_parsed_once_by_the_engine_and_the_task_receives_typed_values(monkeypatch):
    from cstp_cli.api import Option

    calls = []
    original = Option.parse

    def counting(self, value):
        calls.append(self.name)
        return original(self, value)

    monkeypatch.setattr(Option, "parse", counting)
    obj = build(sets={"stor": {"decorrelate": "true", "candidates": "4"}})
    stor = next(t for t in obj.tasks if t.name == "stor")
    assert sorted(calls) == ["candidates", "decorrelate", "pred_hidden", "proj_hidden"]  # once each: not again in stor or byol
    assert stor.decorrelate is True and stor.n == 4


def test_a_value_the_task_refuses_is_a_usage_error_naming_it():
    with pytest.raises(UsageError, match="--set stor: stor.candidates must be at least 2"):
        build(sets={"stor": {"candidates": "1"}})


def test_build_tasks_is_the_route_of_data_pairs_too():
    from cstp_cli.commands.data_pairs import build_tasks as pairs_tasks
    from cstp_cli.engine.objective import build_tasks

    entries = build_tasks(parse_selection("none", "stor", "pace"), sets={"stor": {"parts": "temporal"}})
    tasks = pairs_tasks("stor", "pace", ["stor.parts=temporal"])
    assert [(e.name, e.augment_only) for e in entries] == [(t.name, t.augment_only) for t in tasks] == [("stor", False), ("pace", True)]
    assert tasks[0].parts == entries[0].task.parts == ("temporal",)


def test_every_builtin_component_declares_the_defaults_its_build_uses():
    import inspect

    from cstp_cli.plugins import get_registry

    registry = get_registry()
    specs = [registry.pretext(n) for n in ("stor", "pace", "rot")]
    specs += [registry.scheme(n) for n in ("byol", "moco", "simclr", "simsiam")]
    for spec in specs:
        params = inspect.signature(spec.build).parameters
        for name, opt in spec.options.items():
            default = params[name].default
            default = list(default) if isinstance(default, tuple) else default
            assert default == opt.default, (spec.name, name)
