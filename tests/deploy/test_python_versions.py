"""The installed code runs on Python 3.10 as well as 3.11: the Jetson inference image has 3.10,
because NVIDIA's JetPack 6 wheels (onnxruntime-gpu, TensorRT) are built for it. No 3.10 interpreter
here, so `vermin` (the `test` extra) reads the code for features newer than 3.10."""

from __future__ import annotations

import tomllib

from shared.ops.config import REPO_ROOT
from tests.deploy.tools import run, tool


def _packages() -> list[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted(str(REPO_ROOT / p.rstrip("*")) for p in include if (REPO_ROOT / p.rstrip("*")).is_dir())


def test_installed_code_needs_no_python_newer_than_3_10():
    packages = _packages()
    assert any(p.endswith("services") for p in packages) and any(p.endswith("shared") for p in packages)
    result = run([tool("vermin"), "--no-tips", "--violations", "-t=3.10-", "--eval-annotations", *packages])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


def test_the_check_finds_a_3_11_feature(tmp_path):
    (tmp_path / "new.py").write_text("from datetime import UTC\nprint(UTC)\n")
    result = run([tool("vermin"), "--no-tips", "--violations", "-t=3.10-", str(tmp_path)])
    assert result.returncode != 0 and "datetime.UTC" in result.stdout


def test_the_package_admits_3_10():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"].startswith(">=3.10")
