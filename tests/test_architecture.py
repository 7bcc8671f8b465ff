"""The import rules of the house, read from the source with `ast` (nothing is imported).

- A service (services/X) imports shared/ and its own folder, never another service: what
  two services share belongs in shared/.
- shared/ and training/ import no service; nothing installed (services, shared, tools, bench, training)
  imports the tests.
- No test module imports another test module: helpers live in conftest.py or tests/support.
- shared/ is four layers, data < bus < ops < vision: a layer imports only layers below it, by
  import statement or by a dotted name in a string (the way importlib or a patch target would).
- The command line (engagement/) sits above everything: nothing installed imports it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALLED = ("services", "shared", "tools", "bench", "training")
SHARED_LAYERS = ("data", "bus", "ops", "vision")  # bottom to top


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, at any depth."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # `from services import capture` names a service too
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return found


def _python_files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts)


def _top(module: str, depth: int) -> str:
    return ".".join(module.split(".")[:depth])


def breaches_of_service_rooms() -> list[str]:
    out = []
    for path in _python_files("services"):
        own = path.relative_to(ROOT).parts[1]
        for line, module in imported_modules(path):
            if module.startswith("services.") and _top(module, 2) != f"services.{own}":
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return out


def breaches_of_installed_code() -> list[str]:
    out = []
    for folder in INSTALLED:
        for path in _python_files(folder):
            for line, module in imported_modules(path):
                if module == "tests" or module.startswith("tests."):
                    out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
                if folder in ("shared", "training") and (module == "services" or module.startswith("services.")):
                    out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return out


def _strings(path: Path) -> list[tuple[int, str]]:
    return [(node.lineno, node.value) for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def _modules_named_in(text: str) -> list[str]:
    """Dotted module names of the house inside a string (`"shared.ops.config:X"`, a patch target)."""
    found = re.findall(r"\b(?:shared|services|engagement|tools|bench|training)(?:\.[a-z_]+)+", text)
    # only names of modules that exist ("engagement.yaml" is a file name, not a module)
    return [m for m in found if (ROOT / _top(m, 2).replace(".", "/")).is_dir()
            or (ROOT / _top(m, 2).replace(".", "/")).with_suffix(".py").is_file()]


def breaches_of_shared_layers() -> list[str]:
    out = []
    for rank, layer in enumerate(SHARED_LAYERS):
        upper = {f"shared.{name}" for name in SHARED_LAYERS[rank + 1:]}
        for path in _python_files(f"shared/{layer}"):
            named = imported_modules(path) + [(line, m) for line, s in _strings(path) for m in _modules_named_in(s)]
            for line, module in named:
                top = _top(module, 2)
                if top in upper or top.split(".")[0] in ("services", "engagement", "tools", "bench", "training"):
                    out.append(f"{path.relative_to(ROOT)}:{line} ({layer}) names {module}")
    loose = sorted(p.name for p in (ROOT / "shared").glob("*.py") if p.name != "__init__.py")
    out.extend(f"shared/{name} is in no layer" for name in loose)
    return out


def breaches_of_the_command_line() -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports {module}"
            for folder in INSTALLED for path in _python_files(folder)
            for line, module in imported_modules(path) if module == "engagement" or module.startswith("engagement.")]


def _is_test_module(module: str) -> bool:
    last = module.split(".")[-1]
    return module.startswith("tests.") and (last.startswith("test_") or last == "conftest")


def breaches_of_test_modules() -> list[str]:
    out = []
    for path in _python_files("tests"):
        for line, module in imported_modules(path):
            if _is_test_module(module):
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return out


def test_no_service_imports_another_service():
    assert breaches_of_service_rooms() == []


def test_installed_code_never_imports_the_tests_and_shared_and_training_no_service():
    assert breaches_of_installed_code() == []


def test_shared_layers_import_only_downwards():
    assert breaches_of_shared_layers() == []


def test_nothing_installed_imports_the_command_line():
    assert breaches_of_the_command_line() == []


@pytest.mark.parametrize(("source", "module", "breach"), [
    ("from shared.ops.config import Settings\n", "shared/data/x.py", True),
    ("def f():\n    from shared.vision import detectors\n", "shared/ops/x.py", True),
    ("TARGET = 'shared.vision.detectors:find'\n", "shared/bus/x.py", True),
    ("from services.capture import service\n", "shared/vision/x.py", True),
    ("from shared.data.levels import LEVELS\n", "shared/vision/x.py", False),
    ("from shared.bus.messages import Frame\n", "shared/ops/x.py", False),
    ("X = 1\n", "shared/loose.py", True),
])
def test_the_layer_rule_catches_what_it_should(tmp_path, monkeypatch, source, module, breach):
    """A planted upward import, upward string or loose module is reported; a downward one is not."""
    for layer in SHARED_LAYERS:
        (tmp_path / "shared" / layer).mkdir(parents=True)
    fake = tmp_path / module
    fake.write_text(source)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert bool(breaches_of_shared_layers()) == breach


def test_no_test_module_imports_another_test_module():
    assert breaches_of_test_modules() == []


@pytest.mark.parametrize(("source", "module", "breach"), [
    ("from services.aggregator.store import Store\n", "services/reporter/x.py", True),
    ("import services.inference.bundle\n", "services/launcher/x.py", True),
    ("from services import capture\n", "services/reporter/x.py", True),
    ("from services.reporter import overlay\n", "services/reporter/x.py", False),
    ("from shared.data.totals import Store\n", "services/reporter/x.py", False),
    ("def f():\n    from services.facedetect.detectors import crop_face\n", "services/inference/x.py", True),
])
def test_the_rule_catches_what_it_should(tmp_path, monkeypatch, source, module, breach):
    """The checker itself can fail: a planted cross-service import is reported, an own one is not."""
    fake = tmp_path / module
    fake.parent.mkdir(parents=True)
    fake.write_text(source)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert bool(breaches_of_service_rooms()) == breach
