"""The plugin manager: entry points, built-ins, broken and duplicate plugins (issue 2 item 2)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cstp_cli import plugins as plugin_mod
from cstp_cli.cli import build_app
from cstp_cli.errors import PluginError


def install_plugin(tmp_path: Path, monkeypatch, dist: str, module: str, source: str, ep_name: str | None = None) -> None:
    """Install a throw-away plugin through a real entry point (a .dist-info on sys.path)."""
    root = tmp_path / f"site-{dist}"
    root.mkdir()
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[cstp]\n{ep_name or module} = {module}\n")
    monkeypatch.syspath_prepend(str(root))


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    monkeypatch.delenv("CSTP_STRICT_PLUGINS", raising=False)
    yield
    plugin_mod._REGISTRY = None  # rebuilt lazily once the throw-away plugins are gone


GOOD = """
from cstp_cli.hookspecs import hookimpl
from cstp_cli.api import PretextSpec, PretextTask, Option

class Echo(PretextTask):
    name = "echo"

@hookimpl
def register_pretext_tasks(register):
    register(PretextSpec(name="echo", build=Echo, default_weight=0.5,
                         options={"depth": Option("depth", "int", 3, "how deep")}))
"""


def test_builtins_are_registered():
    registry = plugin_mod.get_registry(refresh=True)
    assert {"r21d", "c3d", "r3d18", "r2plus1d18", "s3d", "cnn4"} <= set(registry.names("backbone"))
    assert {"simclr", "moco", "byol", "simsiam"} <= set(registry.names("contrastive"))
    assert {"stor", "pace", "rot"} <= set(registry.names("pretext"))


def test_third_party_plugin_is_loaded_through_entry_point(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "cstp-echo", "cstp_echo_plugin", GOOD)
    registry = plugin_mod.get_registry(refresh=True)
    spec = registry.pretext("echo")
    assert spec.default_weight == 0.5
    comp = [c for c in registry.all() if c.name == "echo"][0]
    assert comp.version == "0.3" and "cstp-echo" in comp.plugin


def test_broken_plugin_is_skipped_with_one_warning(tmp_path, monkeypatch, capsys):
    install_plugin(tmp_path, monkeypatch, "cstp-broken", "cstp_broken_plugin", "raise ImportError('no such thing')\n")
    registry = plugin_mod.get_registry(refresh=True)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "cstp_broken_plugin" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: skipping plugin")
    assert any("cstp_broken_plugin" in name for name in registry.report.skipped)
    assert "r21d" in registry.names("backbone")


def test_strict_mode_turns_broken_plugin_into_error(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "cstp-broken", "cstp_broken_plugin", "raise ImportError('nope')\n")
    monkeypatch.setenv("CSTP_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="cstp_broken_plugin"):
        plugin_mod.get_registry(refresh=True)


def test_strict_mode_exits_1_from_cli(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "cstp-broken", "cstp_broken_plugin", "raise ImportError('nope')\n")
    monkeypatch.setenv("CSTP_STRICT_PLUGINS", "1")
    plugin_mod._REGISTRY = None
    with pytest.raises(SystemExit) as exc:
        from cstp_cli.cli import main

        main(["plugins"])
    assert exc.value.code == 1


def test_duplicate_name_names_both_providers(tmp_path, monkeypatch):
    dup = GOOD.replace('"echo"', '"rot"')
    install_plugin(tmp_path, monkeypatch, "cstp-dup", "cstp_dup_plugin", dup)
    with pytest.raises(PluginError) as exc:
        plugin_mod.get_registry(refresh=True)
    message = str(exc.value)
    assert "rot" in message and "cstp_dup_plugin" in message and "two plugins" in message


def test_unknown_name_lists_installed():
    registry = plugin_mod.get_registry(refresh=True)
    with pytest.raises(PluginError) as exc:
        registry.backbone("resnet9000")
    assert "resnet9000" in str(exc.value) and "r21d" in str(exc.value)


def test_plugins_command_lists_components_with_provider_and_options(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "cstp-echo", "cstp_echo_plugin", GOOD)
    plugin_mod.get_registry(refresh=True)
    result = CliRunner().invoke(build_app(), ["plugins"])
    assert result.exit_code == 0, result.output
    echo = [line for line in result.output.splitlines() if " echo " in line]
    assert echo and "cstp-echo" in echo[0] and "0.3" in echo[0] and "depth=3" in echo[0]
    assert any(line.startswith("backbone") and "r21d" in line for line in result.output.splitlines())


def test_builtins_register_from_source_checkout_without_metadata(monkeypatch):
    monkeypatch.setattr(plugin_mod, "_entry_points", lambda: [])
    registry = plugin_mod.build_registry()
    assert "byol" in registry.names("contrastive") and "stor" in registry.names("pretext")
