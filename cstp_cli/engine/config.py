"""Run configuration of ``cstp pretrain``: defaults, presets, TOML files and flags.

Precedence, lowest first: :data:`DEFAULTS` (METHOD §6) < a preset (``--preset`` or the
config file's ``preset = "..."``; ``cpu-synthetic`` when no DATA is given) < the TOML config
file (``--config``) < command-line flags. The config is a plain dict (TOML types only), so a
checkpoint stores it as is and ``weights_only=True`` loads it.

TOML layout (every key optional)::

    preset = "ucf101-r21d-byol"
    backbone = "r21d"            # and every other scalar key of DEFAULTS
    [objective]
    contrastive = "byol=0.1"      # NAME[=λ] or "none"
    pretext = "stor,rot,pace"     # NAME[=λ],... or "none"; a TOML list works too
    augment = "pace,rot"          # NAME,... or "none"
    [pretext.stor]                # options of a pretext task (also for --augment tasks)
    decorrelate = true
    [contrastive.byol]            # options of a contrastive scheme
    momentum = 0.998
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

from cstp_cli.core.options import parse_size, read_toml
from cstp_cli.errors import UsageError

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"

#: METHOD §6 defaults (the paper's recipe) — what a run gets when nothing else is said.
DEFAULTS: dict[str, Any] = {
    "data": None,
    "backbone": "r21d",
    "width": "full",
    "epochs": 300,
    "batch_size": 60,
    "lr": 0.03,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "min_lr": 1e-5,
    "warmup_epochs": 0,
    "grad_clip": 18.0,
    "workers": 4,
    "device": "auto",
    "precision": "bf16",
    "compile": False,
    "sync_bn": False,
    "seed": 0,
    "out": None,
    "sampling": "clean",
    "photometric_p": 1.0,
    "split": 1,
    "frames": 16,
    "clip_size": 112,
    "size": None,  # cache frame size WxH; None: a cache file's own size, 171x128 when building
    "max_steps": None,
    "objective": {"contrastive": "byol", "pretext": "stor,rot,pace", "augment": "pace,rot"},
    "pretext": {},
    "contrastive": {},
    "sets": {},  # --set COMPONENT.OPTION=VALUE (an inactive COMPONENT is a usage error)
}

#: Keys that may change on ``--resume`` without breaking the run's definition.
RESUME_MUTABLE = frozenset({"data", "workers", "device", "out", "max_steps", "epochs", "sync_bn"})

_OBJECTIVE_KEYS = ("contrastive", "pretext", "augment")


def preset_names() -> list[str]:
    """Names of the shipped presets (``cstp_cli/presets/*.toml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))




def load_preset(name: str) -> dict[str, Any]:
    """The preset ``name`` as a config dict (unknown names list the shipped ones)."""
    path = PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        raise UsageError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
    data = read_toml(path)
    data.pop("description", None)
    return data


def merge(base: Mapping[str, Any], over: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``over`` on top of ``base``; tables merge one level deep; unknown keys are refused."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if key == "preset":
            continue
        if key not in DEFAULTS:
            known = ", ".join(k for k in DEFAULTS if k not in ("pretext", "contrastive", "sets"))
            raise UsageError(f"{source}: unknown setting {key!r} (settings: {known})")
        if key == "objective":
            bad = set(value) - set(_OBJECTIVE_KEYS)
            if bad:
                raise UsageError(f"{source}: [objective] has no key {sorted(bad)[0]!r} (keys: {', '.join(_OBJECTIVE_KEYS)})")
            out["objective"] = {**out["objective"], **{k: _as_text(v) for k, v in value.items()}}
        elif key in ("pretext", "contrastive"):
            if not isinstance(value, Mapping):
                raise UsageError(f"{source}: [{key}] must be a table of component tables, e.g. [{key}.NAME]")
            tables = out[key]
            for comp, opts in value.items():
                tables[comp] = {**tables.get(comp, {}), **dict(opts)}
        else:
            out[key] = value
    return out


def _as_text(value: Any) -> str:
    """Objective selections may be TOML lists: ``["stor", "rot=0.5"]`` → ``"stor,rot=0.5"``."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "none"
    return str(value)






def build_config(
    *,
    data_given: bool,
    preset: str | None = None,
    config_file: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The effective config: defaults < preset < config file < ``flags`` (non-None values).

    ``flags`` uses the DEFAULTS keys, plus ``objective`` entries and ``sets`` (the parsed
    ``--set`` table, merged into ``[pretext.*]``/``[contrastive.*]`` later by the objective).
    """
    file_cfg = read_toml(config_file) if config_file else {}
    preset = preset or file_cfg.get("preset") or (None if data_given else "cpu-synthetic")
    cfg = merge(DEFAULTS, {}, "defaults")
    if preset:
        cfg = merge(cfg, load_preset(preset), f"preset {preset}")
    if file_cfg:
        cfg = merge(cfg, file_cfg, f"config {config_file}")
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    cfg = merge(cfg, given, "command line")
    cfg["preset"] = preset
    validate(cfg)
    return cfg


def validate(cfg: Mapping[str, Any]) -> None:
    """Refuse values that cannot work, one line each (exit 2)."""
    checks = [
        (cfg["epochs"] >= 1, f"--epochs must be at least 1, got {cfg['epochs']}"),
        (cfg["batch_size"] >= 2, f"--batch-size must be at least 2 (BatchNorm), got {cfg['batch_size']}"),
        (cfg["lr"] > 0, f"--lr must be positive, got {cfg['lr']}"),
        (cfg["workers"] >= 0, f"--workers must be >= 0, got {cfg['workers']}"),
        (cfg["frames"] >= 1, f"--frames must be >= 1, got {cfg['frames']}"),
        (cfg["clip_size"] >= 8, f"--clip-size must be >= 8, got {cfg['clip_size']}"),
        (cfg["width"] in ("full", "tiny"), f"--width must be full or tiny, got {cfg['width']!r}"),
        (cfg["precision"] in ("bf16", "fp32"), f"--precision must be bf16 or fp32, got {cfg['precision']!r}"),
        (cfg["sampling"] in ("clean", "reference"), f"--sampling must be clean or reference, got {cfg['sampling']!r}"),
        (cfg["max_steps"] is None or cfg["max_steps"] >= 1, "--max-steps must be at least 1"),
        (0 <= cfg["warmup_epochs"] < cfg["epochs"], "warmup_epochs must be in [0, epochs)"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    if cfg["size"] is not None:
        parse_size(cfg["size"])
