"""The `engagement` command's table (engagement/cli.py): every name it runs is a "module:attribute" that
exists, the console scripts too, and `--help` imports nothing of the house (each module is imported only
when its name is run, so that only `inference` ever imports TensorFlow).

The targets are strings, so no import statement shows them to a checker: they are checked here, from
the source with `ast`, without importing the services (and TensorFlow with them).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib

import pytest

from engagement.cli import COMMANDS, SERVICE_CLASSES, SERVICES
from shared.ops.config import REPO_ROOT

HOUSE = ("services", "shared", "tools", "bench", "training", "engagement.commands", "tensorflow", "keras")


def _top_level_names(module: str) -> set[str]:
    """Names a module defines or imports at its top level, read from its file."""
    path = REPO_ROOT / module.replace(".", "/")
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    assert path.is_file(), f"{module}: no file {path}"
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _scripts() -> dict[str, str]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("target", sorted({*SERVICES.values(), *COMMANDS.values(), *_scripts().values()}))
def test_every_target_names_an_attribute_of_a_module_of_the_house(target):
    module, sep, attribute = target.partition(":")
    assert sep and attribute, target
    assert attribute in _top_level_names(module), target


def test_every_service_has_a_loader_and_the_names_stay_apart():
    assert set(SERVICE_CLASSES) == set(SERVICES)
    assert not set(SERVICES) & set(COMMANDS)
    assert _scripts()["engagement"] == "engagement.cli:main"


def test_help_lists_every_name_and_imports_nothing_of_the_house():
    code = ("import json, sys\nfrom engagement.cli import main\nmain(['--help'])\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HOUSE!r}))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    *shown, imported = done.stdout.splitlines()
    assert json.loads(imported) == []
    listed = {line.split(":", 1)[0]: line.split(":", 1)[1] for line in shown if line.startswith(("services:",
                                                                                                "commands:"))}
    assert listed["services"].strip().split(", ") == list(SERVICES)
    assert listed["commands"].strip().split(", ") == list(COMMANDS)


def test_a_name_runs_through_the_loader_and_an_unknown_one_is_one_line():
    ran = subprocess.run([sys.executable, "-m", "engagement.cli", "config", "--example"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert "\nsession_id: " in ran.stdout  # the config module, imported by the loader, wrote it
    unknown = subprocess.run([sys.executable, "-m", "engagement.cli", "no-such-command"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert "unknown command 'no-such-command'" in unknown.stderr


def test_a_command_interrupted_says_so_in_one_line(monkeypatch, capsys):
    """Ctrl-C in a command (a benchmark stops when the class it runs is stopped): one line, exit 130, no traceback."""
    from engagement import cli

    def stopped(argv: list[str]) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load", lambda target: stopped)  # what `engagement bench` runs
    assert cli.main(["bench", "--quick"]) == 130
    assert capsys.readouterr().err == "engagement bench: interrupted\n"
