"""Typed component options (``--set NAME.OPTION=VALUE``) and their one parser.

The engine (:mod:`cstp_cli.engine.objective`) is the only caller of :func:`resolve_options`
for a run: it merges the config tables and ``--set`` over the declared defaults and hands a
component's ``build`` the parsed values. A component never parses its options again.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Mapping

__all__ = ["Option", "resolve_options", "option_defaults", "parse_fraction"]


def parse_fraction(text: str) -> Fraction:
    """Parse ``"4/5"`` or ``"1"`` into an exact :class:`fractions.Fraction`."""
    return Fraction(text.strip())


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in _BOOL_TRUE:
        return True
    if str(value).lower() in _BOOL_FALSE:
        return False
    raise ValueError(f"{name} expects true/false, got {value!r}")


def _items(value: Any) -> list[Any]:
    """A TOML list as it is; a command-line string split at commas."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [v for v in str(value).split(",") if v.strip()]


#: Option type → parser ``(option name, value) -> typed value``.
_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "int": lambda name, v: int(v),
    "float": lambda name, v: float(v),
    "str": lambda name, v: str(v),
    "bool": _parse_bool,
    "list[int]": lambda name, v: [int(x) for x in _items(v)],
    "list[str]": lambda name, v: [str(x).strip() for x in _items(v)],
}


@dataclass(frozen=True)
class Option:
    """A typed, documented option of a component, set with ``--set name.option=value``.

    ``type`` is one of ``int``, ``float``, ``str``, ``bool`` or ``list[int]`` /
    ``list[str]`` (comma-separated on the command line, a list in TOML).
    ``aliases``: old spellings of a value, mapped to the current one with a deprecation
    note (``{"paper": "cstp-eq1"}``); they are accepted but not listed as choices.
    """

    name: str
    type: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    aliases: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.type not in _PARSERS:
            raise ValueError(f"option {self.name} has unknown type {self.type!r}; one of {', '.join(_PARSERS)}")

    def parse(self, value: Any) -> Any:
        """Convert a command-line string (or a TOML value) to this option's type.

        Raises ``ValueError`` with a readable message on a bad value. A deprecated alias
        is replaced by its value, with one ``FutureWarning`` (shown to users) naming the new spelling.
        """
        out = _PARSERS[self.type](self.name, value)
        if self.aliases and isinstance(out, str) and out in self.aliases:
            import warnings

            new = self.aliases[out]
            warnings.warn(f"{self.name}={out} is deprecated; write {self.name}={new}", FutureWarning, stacklevel=2)
            out = new
        if self.choices is not None:
            values = out if isinstance(out, list) else [out]
            bad = [v for v in values if v not in self.choices]
            if bad:
                raise ValueError(
                    f"{self.name} must be one of {', '.join(map(str, self.choices))}, got {bad[0]!r}"
                )
        return out


def option_defaults(declared: Mapping[str, Option]) -> dict[str, Any]:
    """``{name: default}`` of declared options (what a bare run passes to ``build``)."""
    return {name: opt.default for name, opt in declared.items()}


def resolve_options(declared: Mapping[str, Option], given: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """Merge ``given`` (strings or TOML values) over the declared defaults, parsed.

    Raises ``KeyError`` naming the unknown option and the known ones, ``ValueError`` on a
    bad value.
    """
    out = option_defaults(declared)
    for key, value in given.items():
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise KeyError(f"{owner} has no option {key!r} (options: {known})")
        out[key] = declared[key].parse(value)
    return out
