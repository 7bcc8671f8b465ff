"""The suite's tools come from the project's own set-up, never from what a machine happened to have.

A tool that an earlier session left on PATH once made CI green on a machine where a fresh
clone failed (hadolint installed in .venv/bin, looked up on PATH only). So every tool the
suite runs is listed here with its provider, and each is checked to resolve to that provider:
the project's virtualenv (its extras in pyproject.toml) or a Debian package that
scripts/setup.sh installs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.ops.config import REPO_ROOT
from tests.support.executables import find_executable, scripts_dir

VENV = "the project's virtualenv"
# tool -> provider: VENV, or the Debian package that scripts/setup.sh installs.
TOOLS = {
    "hadolint": VENV,
    "kubectl": VENV,
    "ruff": VENV,
    "vermin": VENV,
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "redis-server": "redis-server",
    "mosquitto": "mosquitto",
    "mosquitto_sub": "mosquitto-clients",
    "ffmpeg": "ffmpeg",
    "ffprobe": "ffmpeg",
    # The screen sources' tests: a virtual X server, a real player window, window look-up and moves.
    "Xvfb": "xvfb",
    "ffplay": "ffmpeg",
    "xwininfo": "x11-utils",
    "xdotool": "xdotool",
}


def _setup_packages() -> set[str]:
    text = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    return set(re.findall(r"need\+=\(([^)]+)\)", text))


def _debian_owner(path: str) -> str | None:
    # On merged-/usr systems PATH may name /bin/x while dpkg records /usr/bin/x.
    for candidate in (path, "/usr" + path if not path.startswith("/usr/") else path):
        out = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.split(":", 1)[0].strip()
    return None


def test_every_tool_the_deploy_checks_use_is_listed():
    used = set()
    for py in (REPO_ROOT / "tests").rglob("*.py"):
        used |= set(re.findall(r"\btool\(\"([\w.-]+)\"\)", py.read_text()))
    assert used, "no tool(...) look-ups found: the scan is broken"
    assert used <= set(TOOLS), f"add these to TOOLS with their provider: {sorted(used - set(TOOLS))}"


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_tool_comes_from_the_project_set_up(name):
    provider = TOOLS[name]
    path = find_executable(name)
    assert path, f"{name} not found: ./scripts/setup.sh installs it ({provider})"
    if provider == VENV:
        assert Path(path).parent == scripts_dir(), f"{name} resolved to {path}, not to {scripts_dir()}"
        return
    assert provider in _setup_packages(), f"scripts/setup.sh does not install Debian's {provider} (for {name})"
    owner = _debian_owner(path)
    assert owner == provider, f"{name} resolved to {path}, owned by {owner or 'no Debian package'}, not {provider}"


def test_venv_tools_are_found_without_the_venv_on_path():
    # Exactly how `make test` runs: .venv/bin/pytest with a PATH that does not name .venv/bin.
    code = "from tests.support.executables import find_executable; print(find_executable('hadolint'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, check=True)
    assert Path(out.stdout.strip()).parent == scripts_dir()


def test_a_missing_tool_is_none_not_an_error():
    assert find_executable("no-such-tool-anywhere") is None
