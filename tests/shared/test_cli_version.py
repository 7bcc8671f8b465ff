"""`engagement --version`: the installed version, as pyproject.toml gives it, from the real command."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from shared.ops.config import REPO_ROOT


def test_version_is_pyprojects():
    want = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    for flag in ("--version", "-V"):
        result = subprocess.run([sys.executable, "-m", "engagement.cli", flag], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"engagement {want}"
