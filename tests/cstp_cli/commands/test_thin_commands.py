"""The evaluation commands are thin (issue 11 item 1): options, one library call, printing.

Their modules import neither torch nor NumPy (at any level, lazily included) and no other
command module except ``linear_cmd`` → ``finetune_cmd`` for the shared option set.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cstp_cli.commands

COMMANDS = Path(cstp_cli.commands.__file__).parent
EVAL_COMMANDS = ("finetune_cmd", "linear_cmd", "retrieve_cmd", "embed_cmd")
FORBIDDEN = ("torch", "numpy")


def imported_modules(path: Path) -> list[str]:
    """Every module an ``import``/``from ... import`` anywhere in ``path`` names."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
    return out


@pytest.mark.parametrize("name", EVAL_COMMANDS)
def test_an_evaluation_command_imports_neither_torch_nor_numpy(name):
    bad = [m for m in imported_modules(COMMANDS / f"{name}.py") if m.split(".")[0] in FORBIDDEN]
    assert not bad, f"{name}.py imports {bad}; put the work in cstp_cli/evaluation/"


@pytest.mark.parametrize("name", EVAL_COMMANDS)
def test_an_evaluation_command_is_no_library_of_another(name):
    others = {f"cstp_cli.commands.{n}" for n in EVAL_COMMANDS} - {f"cstp_cli.commands.{name}"}
    allowed = {"cstp_cli.commands.finetune_cmd"} if name == "linear_cmd" else set()
    assert not (set(imported_modules(COMMANDS / f"{name}.py")) & (others - allowed))


def test_the_scan_sees_a_lazy_torch_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    import torch.nn as nn\n    from numpy import zeros\n")
    assert [m.split(".")[0] for m in imported_modules(probe)] == ["torch", "numpy"]


def test_the_shared_supervised_module_is_gone():
    assert not (COMMANDS / "supervised_cli.py").exists()


def test_loading_the_evaluation_commands_imports_neither_torch_nor_numpy():
    import subprocess
    import sys

    code = ("import sys\n"
            "for name in ('finetune_cmd', 'linear_cmd', 'retrieve_cmd', 'embed_cmd'):\n"
            "    __import__('cstp_cli.commands.' + name)\n"
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
