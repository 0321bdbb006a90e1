"""Typed, layered settings: every key declared once, with its type, default and help text.

A command's settings are a dataclass deriving from :class:`Settings` whose fields are made
with :func:`setting`. One function, :meth:`Settings.layered`, builds the effective values
from four layers, lowest first::

    declared defaults  <  a preset (TOML)  <  a --config TOML file  <  command-line flags

and :func:`command` turns the same declarations into the Typer options of a command, so
the flag, its type, its help and the default printed by ``--help`` come from one place.
Where a bare run uses a preset (``cstp pretrain`` without DATA uses ``cpu-synthetic``), the
help says so beside the default: ``(default: 60; bare run, preset cpu-synthetic: 32)``.

A preset or config file is a TOML document; a settings class with ``TABLE = "finetune"``
reads its values from the ``[finetune]`` table of it (evaluation presets hold one table per
command), otherwise from the top level. A field whose type is itself a :class:`Settings`
subclass is a TOML table (``[objective]``) whose fields are flags of their own. Fields
declared with ``kind="table"`` hold free-form component tables (``[pretext.stor]``), merged
one level deep and checked later by whoever owns the components.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar, Mapping, Optional, Sequence, TypeVar

from cstp_cli.core.options import read_toml
from cstp_cli.errors import UsageError

__all__ = ["Settings", "setting", "command", "Extra"]

S = TypeVar("S", bound="Settings")

_META = "cstp_setting"


@dataclass(frozen=True)
class _Declared:
    """What :func:`setting` records about a field (kept in the field's metadata)."""

    help: str
    flag: str | None  # "--batch-size"; None: no command-line flag
    short: str | None
    choices: tuple[Any, ...] | None
    minimum: float | None
    check: Callable[[Any], str | None] | None  # returns a problem, or None
    kind: str  # "value" | "table" | "sub"
    cli_type: Any  # the type Typer parses (None: the field's own)
    resume: bool  # may change on --resume


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None | bool = True,
    short: str | None = None,
    choices: Sequence[Any] | None = None,
    minimum: float | None = None,
    check: Callable[[Any], str | None] | None = None,
    kind: str = "value",
    cli_type: Any = None,
    resume: bool = False,
) -> Any:
    """Declare one setting: its default, its help text and how it is checked.

    ``flag``: True derives ``--batch-size`` from the field name, a string names the flag,
    False/None declares a setting of files only. ``choices``/``minimum``/``check`` are
    validated by :meth:`Settings.validate` with one-line usage errors. ``kind="table"``
    declares a free-form component table (default ``{}``). ``resume=True`` marks settings
    a resumed run may change. ``cli_type`` is what Typer parses when it differs from the
    field's type (``--set`` takes ``list[str]`` for a table).
    """
    meta = _Declared(help, None if flag in (False, None) else flag, short,
                     tuple(choices) if choices is not None else None, minimum, check, kind, cli_type, resume)
    if isinstance(default, (dict, list)) or kind == "table":
        value = {} if default is None else default
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value), metadata={_META: meta})
    return dataclasses.field(default=default, metadata={_META: meta})


def _flag_of(name: str, meta: _Declared) -> str | None:
    if meta.flag is None:
        return None
    return "--" + name.replace("_", "-") if meta.flag is True else str(meta.flag)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


class Settings:
    """Base of the settings dataclasses (subclasses are ``@dataclass``).

    Class attributes: ``PRESETS`` (folder of ``NAME.toml`` presets or None), ``TABLE``
    (the TOML table holding this command's values, or None for the top level) and
    ``WHAT`` (how errors name the command's settings, e.g. ``"pretrain"``).
    """

    PRESETS: ClassVar[Path | None] = None
    TABLE: ClassVar[str | None] = None
    WHAT: ClassVar[str] = "settings"

    # ------------------------------------------------------------------ declarations
    @classmethod
    def declared(cls) -> dict[str, tuple[dataclasses.Field, _Declared]]:
        """Every declared field by name, in declaration order."""
        return {f.name: (f, f.metadata[_META]) for f in dataclasses.fields(cls) if _META in f.metadata}

    @classmethod
    def _field_type(cls, name: str) -> Any:
        return typing.get_type_hints(cls)[name]

    @classmethod
    def sub_settings(cls) -> dict[str, type["Settings"]]:
        """Fields that are tables of settings of their own (``[objective]``)."""
        out = {}
        for name, (_, meta) in cls.declared().items():
            if meta.kind == "sub":
                out[name] = cls._field_type(name)
        return out

    @classmethod
    def default_values(cls) -> dict[str, Any]:
        """The declared defaults as a plain dict (sub-tables as dicts)."""
        return cls().to_dict()

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset_names(cls) -> list[str]:
        """Names of the shipped presets."""
        if cls.PRESETS is None:
            return []
        return sorted(p.stem for p in Path(cls.PRESETS).glob("*.toml"))

    @classmethod
    def preset_path(cls, name: str) -> Path:
        """The file of preset ``name``; an unknown name lists the shipped ones."""
        path = Path(cls.PRESETS or ".") / f"{name}.toml"
        if cls.PRESETS is None or not path.is_file():
            names = ", ".join(cls.preset_names()) or "none"
            raise UsageError(f"unknown preset {name!r}; presets: {names}")
        return path

    @classmethod
    def _table_of(cls, document: Mapping[str, Any]) -> dict[str, Any]:
        data = dict(document.get(cls.TABLE, {}) if cls.TABLE else document)
        for key in ("description", "preset"):
            data.pop(key, None)
        return data

    @classmethod
    def preset_values(cls, name: str) -> dict[str, Any]:
        """The values preset ``name`` sets (its table, without ``description``)."""
        return cls._table_of(read_toml(cls.preset_path(name)))

    # ------------------------------------------------------------------ layering
    @classmethod
    def layered(
        cls: type[S],
        *,
        preset: str | None = None,
        config: str | Path | None = None,
        flags: Mapping[str, Any] | None = None,
    ) -> S:
        """Defaults < ``preset`` < ``config`` file < ``flags`` (only non-None values count).

        Unknown keys anywhere are a one-line :class:`UsageError` naming the source and the
        known keys; the result is validated (:meth:`validate`).
        """
        values = cls.default_values()
        if preset:
            values = cls._merge(values, cls.preset_values(preset), f"preset {preset}")
        if config:
            values = cls._merge(values, cls._table_of(read_toml(config)), f"config {config}")
        given = {k: v for k, v in (flags or {}).items() if v is not None}
        values = cls._merge(values, given, "command line")
        out = cls.from_dict(values)
        out.validate()
        return out

    @classmethod
    def _merge(cls, base: Mapping[str, Any], over: Mapping[str, Any], source: str) -> dict[str, Any]:
        """``over`` on top of ``base``; sub-tables and component tables merge one level deep."""
        out = copy.deepcopy(dict(base))
        declared = cls.declared()
        subs = cls.sub_settings()
        for key, value in over.items():
            if key not in declared:
                known = ", ".join(k for k, (_, m) in declared.items() if m.kind == "value" or k in subs)
                where = f"[{cls.TABLE}] " if cls.TABLE else ""
                raise UsageError(f"{source}: unknown {cls.WHAT} setting {where}{key!r} (settings: {known})")
            kind = declared[key][1].kind
            if key in subs:
                if not isinstance(value, Mapping):
                    raise UsageError(f"{source}: [{key}] must be a table, got {value!r}")
                out[key] = subs[key]._merge(out.get(key, {}), value, f"{source} [{key}]")
            elif kind == "table":
                if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
                    raise UsageError(f"{source}: [{key}] must be a table of component tables, e.g. [{key}.NAME]")
                tables = out.setdefault(key, {})
                for comp, opts in value.items():
                    tables[comp] = {**tables.get(comp, {}), **dict(opts)}
            else:
                out[key] = value
        return out

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        """Plain TOML types only (what a checkpoint stores and ``weights_only`` loads)."""
        out = {}
        for name in self.declared():
            value = getattr(self, name)
            out[name] = value.to_dict() if isinstance(value, Settings) else copy.deepcopy(value)
        return out

    @classmethod
    def from_dict(cls: type[S], values: Mapping[str, Any]) -> S:
        """Build from a plain dict (unknown keys are ignored here; :meth:`layered` refuses them)."""
        subs = cls.sub_settings()
        kwargs = {}
        for name in cls.declared():
            if name not in values:
                continue
            value = values[name]
            kwargs[name] = subs[name].from_dict(value) if name in subs and isinstance(value, Mapping) else copy.deepcopy(value)
        return cls(**kwargs)

    def replace(self: S, **changes: Any) -> S:
        """A copy with ``changes`` applied (not validated)."""
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Refuse values that cannot work: one :class:`UsageError` line naming the flag."""
        for name, (_, meta) in self.declared().items():
            value = getattr(self, name)
            if isinstance(value, Settings):
                value.validate()
                continue
            label = _flag_of(name, meta) or name
            if meta.choices is not None and value is not None and value not in meta.choices:
                raise UsageError(f"{label} must be one of {', '.join(map(str, meta.choices))}, got {value!r}")
            if meta.minimum is not None and value is not None and value < meta.minimum:
                raise UsageError(f"{label} must be at least {meta.minimum:g}, got {value}")
            problem = meta.check(value) if meta.check is not None and value is not None else None
            if problem:
                raise UsageError(f"{label} {problem}")

    # ------------------------------------------------------------------ help
    @classmethod
    def help_text(cls, name: str, bare_preset: str | None = None) -> str:
        """The help of ``name`` with the default a run really uses (and a bare run's preset value)."""
        owner, meta = cls._owner_of(name)
        default = owner.default_values().get(name)
        text = meta.help
        if meta.kind == "table":
            return text
        suffix = f"default: {_show(default)}"
        if bare_preset is not None:
            preset = cls.preset_values(bare_preset)
            scope = preset if owner is cls else preset.get(_sub_key(cls, owner), {})
            if name in scope and scope[name] != default:
                suffix += f"; bare run, preset {bare_preset}: {_show(scope[name])}"
        return f"{text} ({suffix})"

    @classmethod
    def _owner_of(cls, name: str) -> tuple[type["Settings"], _Declared]:
        """The class declaring the *flag* ``name`` (a sub-table's field wins over a flagless table)."""
        owners = cls.flag_owners()
        if name in owners:
            owner = owners[name]
            return owner, owner.declared()[name][1]
        declared = cls.declared()
        if name in declared:
            return cls, declared[name][1]
        raise KeyError(name)

    @classmethod
    def flag_owners(cls) -> dict[str, type["Settings"]]:
        """Setting name → declaring class, for every command-line flag, in declaration order."""
        out: dict[str, type[Settings]] = {}
        for name, (_, meta) in cls.declared().items():
            if meta.kind == "sub":
                out.update(cls.sub_settings()[name].flag_owners())
            elif meta.flag is not None:
                out[name] = cls
        return out

    @classmethod
    def flag_names(cls) -> list[str]:
        """Setting names that are command-line flags (sub-table fields included), in order."""
        return list(cls.flag_owners())

    @classmethod
    def flags_to_values(cls, flags: Mapping[str, Any]) -> dict[str, Any]:
        """Command-line values (flat, by setting name) → the nested layout of :meth:`layered`."""
        out: dict[str, Any] = {}
        owners = cls.flag_owners()
        for name, value in flags.items():
            if value is None:
                continue
            owner = owners.get(name, cls)
            if owner is cls:
                out[name] = value
            else:
                out.setdefault(_sub_key(cls, owner), {})[name] = value
        return out


def _sub_key(cls: type[Settings], sub: type[Settings]) -> str:
    return next(key for key, value in cls.sub_settings().items() if value is sub)


# --------------------------------------------------------------------------- Typer


@dataclass(frozen=True)
class Extra:
    """A command parameter that is not a setting (``DATA``, ``--resume``, ``--quiet``)."""

    name: str
    annotation: Any  # e.g. Annotated[Optional[str], typer.Argument(help=...)]
    default: Any = None


def _option(cls: type[Settings], name: str, bare_preset: str | None) -> tuple[Any, Any]:
    import typer

    owner, meta = cls._owner_of(name)
    field_type = meta.cli_type or owner._field_type(name)
    base = _strip_optional(field_type)
    decls = [_flag_of(name, meta)] + ([meta.short] if meta.short else [])
    if base is bool:
        decls = [f"{decls[0]}/--no-{decls[0][2:]}"] + decls[1:]
    info = typer.Option(*decls, help=cls.help_text(name, bare_preset))
    return Annotated[Optional[base], info], None


def _strip_optional(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return args[0]
    return tp


def command(
    settings_cls: type[Settings],
    *,
    before: Sequence[Extra] = (),
    after: Sequence[Extra] = (),
    bare_preset: str | None = None,
    exclude: Sequence[str] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a Typer command one option per setting of ``settings_cls`` (plus ``before``/``after``).

    The decorated function is called with keyword arguments: the extras by name and the
    settings' flags as one dict ``flags`` (setting name → value or None when not given).
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        names = [n for n in settings_cls.flag_names() if n not in exclude]
        params, annotations = [], {}
        for extra in (*before,):
            params.append(inspect.Parameter(extra.name, inspect.Parameter.KEYWORD_ONLY, default=extra.default, annotation=extra.annotation))
            annotations[extra.name] = extra.annotation
        for name in names:
            annotation, default = _option(settings_cls, name, bare_preset)
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
            annotations[name] = annotation
        for extra in after:
            params.append(inspect.Parameter(extra.name, inspect.Parameter.KEYWORD_ONLY, default=extra.default, annotation=extra.annotation))
            annotations[extra.name] = extra.annotation
        extras = {e.name for e in (*before, *after)}

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            flags = {k: v for k, v in kwargs.items() if k not in extras}
            return fn(**{k: v for k, v in kwargs.items() if k in extras}, flags=flags)

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = annotations
        del wrapper.__wrapped__  # Typer must read our signature, not fn's
        return wrapper

    return decorate
