"""The four schemes are registered through the plugin manager with METHOD §4 defaults."""

from __future__ import annotations

import pytest
import torch

from cstp_cli.api import ContrastiveScheme, SchemeOutput, resolve_options
from cstp_cli.plugins import get_registry

# METHOD §4's, with issue 12 item 7's fixes: MoCo v2's τ is 0.2 (0.07 is MoCo v1's) and
# BYOL's predictor reads the projector's raw output.
METHOD_DEFAULTS = {
    "simclr": {"temperature": 0.1, "denominator": "standard", "proj_hidden": 4096, "proj_dim": 128},
    "moco": {"queue_size": 2048, "temperature": 0.2, "momentum": 0.999, "proj_hidden": 4096, "proj_dim": 128},
    "byol": {
        "base_momentum": 0.998, "momentum": "constant", "proj_hidden": 4096, "proj_dim": 128, "pred_hidden": 4096,
        "pred_input": "raw",
    },
    "simsiam": {"proj_hidden": 2048, "proj_dim": 2048, "pred_hidden": 512},
}


@pytest.mark.parametrize("name", sorted(METHOD_DEFAULTS))
def test_registered_with_method_defaults(name):
    spec = get_registry().scheme(name)
    defaults = {key: opt.default for key, opt in spec.options.items()}
    assert METHOD_DEFAULTS[name].items() <= defaults.items()
    scheme = spec.build(16, **defaults)
    assert isinstance(scheme, ContrastiveScheme) and scheme.name == name


@pytest.mark.parametrize("name", sorted(METHOD_DEFAULTS))
def test_builds_from_command_line_strings_and_runs(name, encoder, clips):
    spec = get_registry().scheme(name)
    given = {"proj_hidden": "32", "proj_dim": "8"}
    given.update({"pred_hidden": "32"} if "pred_hidden" in spec.options else {})
    scheme = spec.build(16, **resolve_options(spec.options, given, name))
    scheme.attach(encoder)
    out = scheme(encoder(clips[0]), encoder(clips[1]), *clips)
    scheme.after_step(encoder, 1, 10)
    assert isinstance(out, SchemeOutput) and list(out.terms) == [name]
    assert torch.isfinite(out.terms[name]) and "std" in out.stats


@pytest.mark.parametrize("name", sorted(METHOD_DEFAULTS))
def test_loss_is_float32_under_bf16_autocast(name, encoder, clips):
    spec = get_registry().scheme(name)
    options = {key: opt.default for key, opt in spec.options.items()}
    options.update({k: 8 for k in ("proj_hidden", "proj_dim", "pred_hidden") if k in options})
    scheme = spec.build(16, **options)
    scheme.attach(encoder)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = scheme(encoder(clips[0]), encoder(clips[1]), *clips)
    assert out.terms[name].dtype == torch.float32 and torch.isfinite(out.terms[name])
