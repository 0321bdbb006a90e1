"""Plugin manager: loads the ``"cstp"`` entry-point group and collects components.

Built-in plugins live in ``plugins/`` (installed as the package ``cstp_plugins``) and are
registered through the same entry-point group as third-party plugins. From a source
checkout without installed metadata, the built-ins are registered from
:data:`BUILTIN_MODULES` instead, so the tool behaves the same.

A third-party plugin that fails to import is skipped with one warning line naming it;
``CSTP_STRICT_PLUGINS=1`` makes that an error. Two components of one kind with one name are
an error naming both providers; an unknown name lists what is installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from cstp_cli import hookspecs
from cstp_cli.api import BackboneSpec, PretextSpec, SchemeSpec
from cstp_cli.errors import PluginError, UnknownComponentError

ENTRY_POINT_GROUP = "cstp"
DISTRIBUTION = "cstp"

#: Built-in plugin modules (entry-point name → module), mirrored in pyproject.toml.
BUILTIN_MODULES: dict[str, str] = {
    "backbones": "cstp_plugins.backbones",
    "simclr": "cstp_plugins.contrastive.simclr",
    "moco": "cstp_plugins.contrastive.moco",
    "byol": "cstp_plugins.contrastive.byol",
    "simsiam": "cstp_plugins.contrastive.simsiam",
    "stor": "cstp_plugins.pretext.stor",
    "pace": "cstp_plugins.pretext.pace",
    "rot": "cstp_plugins.pretext.rot",
}

KINDS = {
    "backbone": ("register_backbones", BackboneSpec),
    "contrastive": ("register_contrastive_schemes", SchemeSpec),
    "pretext": ("register_pretext_tasks", PretextSpec),
}


@dataclass
class Component:
    """One registered component with where it came from."""

    kind: str
    name: str
    spec: Any
    plugin: str
    version: str


@dataclass
class LoadReport:
    """Plugins that were loaded and those skipped (name → reason)."""

    loaded: dict[str, str] = field(default_factory=dict)  # plugin name → version
    skipped: dict[str, str] = field(default_factory=dict)  # plugin name → one-line reason


def _ensure_builtin_package() -> None:
    """Make ``cstp_plugins`` importable from a source checkout (``plugins/`` beside the app)."""
    try:
        importlib.import_module("cstp_plugins")
        return
    except ModuleNotFoundError:
        pass
    source = Path(__file__).resolve().parent.parent / "plugins" / "__init__.py"
    if not source.exists():
        raise PluginError("the built-in plugins (package cstp_plugins) are missing; reinstall cstp")
    spec = importlib.util.spec_from_file_location(
        "cstp_plugins", source, submodule_search_locations=[str(source.parent)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cstp_plugins"] = module
    spec.loader.exec_module(module)


def _strict() -> bool:
    return os.environ.get("CSTP_STRICT_PLUGINS", "") not in ("", "0", "false")


def _entry_points() -> list[md.EntryPoint]:
    return list(md.entry_points(group=ENTRY_POINT_GROUP))


class Registry:
    """All components of all plugins, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, report: LoadReport, plugin_versions: dict[str, str]):
        self.pm = pm
        self.report = report
        self.components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        for kind, (hook_name, spec_type) in KINDS.items():
            for plugin in pm.get_plugins():
                impl = getattr(plugin, hook_name, None)
                if impl is None:
                    continue
                pname = pm.get_name(plugin) or repr(plugin)
                self._collect(kind, spec_type, impl, pname, plugin_versions.get(pname, "?"))

    def _collect(self, kind: str, spec_type: type, impl: Any, plugin: str, version: str) -> None:
        def register(spec: Any) -> None:
            if not isinstance(spec, spec_type):
                raise PluginError(
                    f"plugin {plugin} registered a {type(spec).__name__} as a {kind}; "
                    f"expected {spec_type.__name__}"
                )
            existing = self.components[kind].get(spec.name)
            if existing is not None:
                raise PluginError(
                    f"{kind} {spec.name!r} is provided by two plugins: {existing.plugin} and "
                    f"{plugin}; uninstall one of them"
                )
            self.components[kind][spec.name] = Component(kind, spec.name, spec, plugin, version)

        try:
            impl(register=register)
        except PluginError:
            raise
        except Exception as exc:  # a plugin's hook crashed: treat like an import failure
            self._plugin_failed(plugin, f"its {kind} hook raised {type(exc).__name__}: {exc}")

    def _plugin_failed(self, plugin: str, reason: str) -> None:
        if _strict():
            raise PluginError(f"plugin {plugin} failed: {reason} (CSTP_STRICT_PLUGINS is set)")
        self.report.skipped[plugin] = reason
        print(f"warning: skipping plugin {plugin}: {reason}", file=sys.stderr)

    # lookup ---------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> Any:
        """The spec of ``kind`` named ``name``; an unknown name lists what is installed."""
        found = self.components[kind].get(name)
        if found is None:
            known = ", ".join(self.names(kind)) or "none"
            raise UnknownComponentError(f"unknown {kind} {name!r}; installed: {known}")
        return found.spec

    def backbone(self, name: str) -> BackboneSpec:
        return self.get("backbone", name)

    def scheme(self, name: str) -> SchemeSpec:
        return self.get("contrastive", name)

    def pretext(self, name: str) -> PretextSpec:
        return self.get("pretext", name)

    def all(self) -> list[Component]:
        return [c for kind in KINDS for c in sorted(self.components[kind].values(), key=lambda c: c.name)]


def _version_of(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "version", None) or "?"


def _dist_name(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return (getattr(dist, "name", None) or "?").lower()


def build_registry() -> Registry:
    """Load built-ins and every ``"cstp"`` entry point into a fresh plugin manager."""
    from cstp_cli import __version__

    pm = pluggy.PluginManager("cstp")
    pm.add_hookspecs(hookspecs)
    report = LoadReport()
    versions: dict[str, str] = {}
    eps = _entry_points()
    builtin_eps = {ep.name for ep in eps if _dist_name(ep) == DISTRIBUTION}
    if set(BUILTIN_MODULES) - builtin_eps:
        # Source checkout (or stale metadata): register the built-ins directly.
        _ensure_builtin_package()
        for name, module_name in BUILTIN_MODULES.items():
            if name in builtin_eps:
                continue
            module = importlib.import_module(module_name)
            pm.register(module, name=name)
            versions[name] = __version__
    for ep in eps:
        is_builtin = _dist_name(ep) == DISTRIBUTION
        label = ep.name if is_builtin else f"{ep.name} ({_dist_name(ep)})"
        if pm.get_plugin(label) is not None:
            continue
        try:
            module = ep.load()
        except Exception as exc:
            if is_builtin:
                raise PluginError(f"built-in plugin {ep.name} failed to import: {exc}") from exc
            if _strict():
                raise PluginError(
                    f"plugin {label} failed to import: {type(exc).__name__}: {exc} "
                    "(CSTP_STRICT_PLUGINS is set)"
                ) from exc
            report.skipped[label] = f"import failed: {type(exc).__name__}: {exc}"
            print(f"warning: skipping plugin {label}: import failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        pm.register(module, name=label)
        versions[label] = _version_of(ep)
    report.loaded = dict(versions)
    return Registry(pm, report, versions)


_REGISTRY: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry (built on first use; ``refresh`` rebuilds it)."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        _REGISTRY = build_registry()
    return _REGISTRY
