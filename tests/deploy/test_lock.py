"""constraints.txt, the lock that compose/Dockerfile and scripts/setup.sh install from: every
dependency of pyproject.toml (all extras and the build backend) must be pinned in it. After
adding a dependency, run ./scripts/lock.sh (the failure says so)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from shared.ops.config import REPO_ROOT

LOCK = REPO_ROOT / "constraints.txt"
PYPROJECT = REPO_ROOT / "pyproject.toml"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def requirement_name(requirement: str) -> str:
    return canonical(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def declared(pyproject_text: str) -> set[str]:
    data = tomllib.loads(pyproject_text)
    project = data["project"]
    requirements = [*data["build-system"]["requires"], *project.get("dependencies", [])]
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {requirement_name(r) for r in requirements}


def pinned(lock_text: str) -> dict[str, str]:
    pins = {}
    for line in lock_text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(\s*;.*)?$", line.strip())
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def missing_from_lock(pyproject_text: str, lock_text: str) -> list[str]:
    return sorted(declared(pyproject_text) - set(pinned(lock_text)))


def test_every_pyproject_dependency_is_pinned_in_the_lock():
    missing = missing_from_lock(PYPROJECT.read_text(), LOCK.read_text())
    assert not missing, f"not in constraints.txt: {missing}; run ./scripts/lock.sh and commit constraints.txt"


def test_the_check_fails_when_a_dependency_is_added_without_relocking():
    text = PYPROJECT.read_text().replace('dependencies = [\n', 'dependencies = [\n    "Some_New.Lib>=1",\n', 1)
    assert "some-new-lib" in missing_from_lock(text, LOCK.read_text())


def test_lock_pins_exact_versions_only():
    lines = [line for line in LOCK.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) >= 20 and all("==" in line for line in lines), [x for x in lines if "==" not in x]
    assert len(pinned(LOCK.read_text())) >= len(declared(PYPROJECT.read_text()))


def test_image_helper_lists_the_build_backend_dependencies_and_extras():
    run = [sys.executable, str(REPO_ROOT / "scripts" / "pyproject_deps.py")]
    edge = subprocess.run(run, capture_output=True, text=True, check=True).stdout.split("\n")
    assert edge[0].startswith("setuptools") and any(r.startswith("pyzmq") for r in edge)
    assert not any("tensorflow" in r for r in edge)  # the edge image has no TensorFlow
    ml = subprocess.run([*run, "ml"], capture_output=True, text=True, check=True).stdout
    assert "tensorflow-cpu" in ml
    bad = subprocess.run([*run, "nope"], capture_output=True, text=True)
    assert bad.returncode != 0 and "no extra nope" in bad.stderr and "Traceback" not in bad.stderr
