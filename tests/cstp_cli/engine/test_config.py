"""Pretraining settings: defaults, presets, TOML files and flags in that order."""

from __future__ import annotations

import pytest

from cstp_cli.engine.config import PretrainSettings, build_config, preset_names
from cstp_cli.errors import UsageError


def test_defaults_are_method_section_6():
    cfg = build_config(data_given=True)
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.min_lr) == (0.03, 0.9, 5e-4, 1e-5)
    assert (cfg.batch_size, cfg.epochs, cfg.grad_clip, cfg.frames, cfg.clip_size) == (60, 300, 18.0, 16, 112)
    assert cfg.objective.to_dict() == {"contrastive": "byol", "pretext": "stor,rot,pace", "augment": "pace,rot"}


def test_no_data_selects_the_cpu_synthetic_preset():
    cfg = build_config(data_given=False)
    assert cfg.preset == "cpu-synthetic" and cfg.width == "tiny"


def test_every_shipped_preset_loads():
    assert {"cpu-synthetic", "ucf101-r21d-byol", "ucf101-c3d-byol", "k400-r21d-byol"} <= set(preset_names())
    for name in preset_names():
        assert build_config(data_given=True, preset=name).preset == name
    assert build_config(data_given=True, preset="ucf101-c3d-byol").backbone == "c3d"
    assert build_config(data_given=True, preset="k400-r21d-byol").batch_size == 128


def test_precedence_preset_then_file_then_flags(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        'preset = "ucf101-c3d-byol"\nepochs = 7\nlr = 0.1\n'
        '[objective]\npretext = ["stor", "rot=0.5"]\n[pretext.stor]\ndecorrelate = true\n'
    )
    cfg = build_config(data_given=True, config_file=path, flags={"lr": 0.2, "epochs": None})
    assert cfg.backbone == "c3d" and cfg.epochs == 7 and cfg.lr == 0.2
    assert cfg.objective.pretext == "stor,rot=0.5" and cfg.objective.contrastive == "byol=0.1"
    assert cfg.pretext == {"stor": {"fusion": "pooled", "decorrelate": True}}  # the preset's table merged with the file's


def test_unknown_setting_in_a_config_file_is_refused(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("learning_rate = 0.1\n")
    with pytest.raises(UsageError, match="unknown pretrain setting 'learning_rate'"):
        build_config(data_given=True, config_file=path)


def test_unknown_preset_lists_the_shipped_ones():
    with pytest.raises(UsageError, match="unknown preset 'fast'.*cpu-synthetic"):
        build_config(data_given=True, preset="fast")


@pytest.mark.parametrize("flag, value, message", [
    ("batch_size", 1, "--batch-size must be at least 2"), ("precision", "fp16", "--precision must be one of bf16, fp32"),
    ("width", "huge", "--width must be one of full, tiny"), ("size", "171", "--size expects WIDTHxHEIGHT"),
    ("lr", 0.0, "--lr must be positive"), ("photometric_p", 1.5, "--photometric-p must be in"), ("frames", 1, "--frames must be at least 2"),
    ("warmup_epochs", 300, "--warmup-epochs must be below --epochs"),
    ("checkpoint_every", "10", "--checkpoint-every expects a time .*, a step count .*got '10'"),
    ("checkpoint_every", "0steps", "--checkpoint-every expects"),
])
def test_bad_values_are_usage_errors_naming_the_flag(flag, value, message):
    assert flag in PretrainSettings.declared()
    with pytest.raises(UsageError, match=message):
        build_config(data_given=True, flags={flag: value})


def test_objective_flags_land_in_the_objective_table():
    cfg = build_config(data_given=True, flags={"contrastive": "simclr", "pretext": "stor"})
    assert (cfg.objective.contrastive, cfg.objective.pretext, cfg.objective.augment) == ("simclr", "stor", "pace,rot")
    assert cfg.contrastive == {}  # the component-option table of the same name is untouched


def test_settings_round_trip_through_plain_dicts():
    cfg = build_config(data_given=False, flags={"sets": {"stor": {"candidates": "4"}}})
    again = PretrainSettings.from_dict(cfg.to_dict())
    assert again == cfg and again.sets == {"stor": {"candidates": "4"}}


def test_resume_may_change_only_the_declared_settings():
    assert PretrainSettings.resume_mutable() == {"data", "workers", "device", "out", "max_steps", "epochs", "sync_bn", "checkpoint_every"}


@pytest.mark.parametrize("text, parsed", [
    ("10m", ("seconds", 600.0)), ("30s", ("seconds", 30.0)), ("1.5h", ("seconds", 5400.0)),
    ("500steps", ("steps", 500.0)), ("1 step", ("steps", 1.0)), ("2epochs", ("epochs", 2.0)), ("end", ("end", 0.0)),
])
def test_checkpoint_every_reads_times_steps_epochs_and_end(text, parsed):
    from cstp_cli.engine.config import parse_every

    assert parse_every(text) == parsed


def test_checkpoint_every_defaults_to_ten_minutes():
    assert build_config(data_given=True).checkpoint_every == "10m"
