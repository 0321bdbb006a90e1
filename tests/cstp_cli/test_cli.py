"""Start-up of the ``cstp`` command line: ``--help`` never imports torch (issue 13 item 9)."""

from __future__ import annotations

import os
import subprocess
import sys
import pytest


#: Runs the CLI like ``python -m cstp_cli ARGS`` and prints every module it imported on exit.
PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('MODULES ' + ' '.join(sorted(sys.modules)), file=sys.stderr))\n"
    "from cstp_cli.cli import main\n"
    "main(sys.argv[1:])\n"
)


def imported_modules(args, env=None):
    """(exit code, stdout, names of the modules in ``sys.modules`` at exit) of ``cstp ARGS``."""
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)
    line = next((x for x in proc.stderr.splitlines() if x.startswith("MODULES ")), "MODULES")
    return proc.returncode, proc.stdout, set(line.split()[1:])


@pytest.mark.parametrize("args", [["--help"], ["pretrain", "--help"], ["retrieve", "--help"]])
def test_help_does_not_import_torch(args):
    code, out, names = imported_modules(args)
    assert code == 0 and "Usage" in out
    assert "cstp_cli.commands.pretrain_cmd" in names  # the measurement works: the commands were imported
    assert not {n for n in names if n == "torch" or n.startswith(("torch.", "torchvision", "cstp_plugins"))}


def test_a_third_party_plugin_still_adds_its_command(tmp_path):
    (tmp_path / "cstp_hello.py").write_text(
        "from cstp_cli.hookspecs import hookimpl\n\n"
        "@hookimpl\n"
        "def register_commands(app):\n"
        "    @app.command('hello')\n"
        "    def hello():\n"
        "        'Say hello (a plugin command).'\n"
        "        print('hello from a plugin')\n"
    )
    dist = tmp_path / "cstp_hello-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cstp-hello\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[cstp]\nhello = cstp_hello\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    code, out, _ = imported_modules(["--help"], env)
    assert code == 0 and "hello" in out and "Say hello" in out
    code, out, _ = imported_modules(["hello"], env)
    assert code == 0 and "hello from a plugin" in out


def test_no_built_in_plugin_adds_commands():
    """The reason ``--help`` may skip the built-ins' registry: none of them implements the hook."""
    from cstp_cli.plugins import BUILTIN_MODULES, _ensure_builtin_package
    import importlib

    _ensure_builtin_package()
    assert [m for m in BUILTIN_MODULES.values() if hasattr(importlib.import_module(m), "register_commands")] == []


def test_help_takes_a_fraction_of_a_second_of_cpu():
    """CPU time, not wall time (a shared test machine is not idle): under 1 s with room to spare."""
    before = os.times()
    subprocess.run([sys.executable, "-m", "cstp_cli", "--help"], capture_output=True, check=True, timeout=120)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    assert cpu < 1.0, f"cstp --help used {cpu:.2f} s of CPU"
