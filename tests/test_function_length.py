"""No function over 60 lines outside the tests (issue 24): a longer one is a sequence of named
steps waiting to be written. Read from the source with `ast` (nothing is imported); a function's
length runs from its `def` line to its last line (decorators not counted, its docstring counted).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("engagement", "shared", "services", "training", "tools", "bench")
MAX_LINES = 60
# Files a branch is splitting, allowed until it merges ("services/web/", for one): none now.
BEING_SPLIT: tuple[str, ...] = ()


def long_functions(root: Path, folders: tuple[str, ...] = FOLDERS, allowed: tuple[str, ...] = BEING_SPLIT,
                   limit: int = MAX_LINES) -> list[str]:
    """"path:line name (N lines)" of every function or method longer than `limit`, nested ones too."""
    out = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            name = path.relative_to(root).as_posix()
            if ".venv" in path.parts or name.startswith(allowed):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), name)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > limit:
                        out.append(f"{name}:{node.lineno} {node.name} ({lines} lines)")
    return out


def test_no_function_is_over_60_lines_outside_the_tests():
    assert long_functions(ROOT) == []


def _body(lines: int, indent: str = "    ") -> str:
    """The statements of a function `lines` long (its def line included)."""
    return "".join(f"{indent}x{i} = {i}\n" for i in range(lines - 1))


@pytest.mark.parametrize(("source", "found"), [
    (f"def short():\n{_body(60)}", []),
    (f"def long():\n{_body(61)}", ["pkg/m.py:1 long (61 lines)"]),
    (f"class C:\n    async def method(self):\n{_body(61, ' ' * 8)}", ["pkg/m.py:2 method (61 lines)"]),
    (f"def outer():\n    def inner():\n{_body(61, ' ' * 8)}", ["pkg/m.py:1 outer (62 lines)",
                                                         "pkg/m.py:2 inner (61 lines)"]),
    (f"@decorated\ndef decorated_short():\n{_body(60)}", []),
])
def test_the_length_rule_catches_what_it_should(tmp_path, source, found):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(source, encoding="utf-8")
    (tmp_path / "pkg" / "allowed.py").write_text(f"def long():\n{_body(80)}", encoding="utf-8")
    assert long_functions(tmp_path, ("pkg",), ("pkg/allowed.py",)) == found
