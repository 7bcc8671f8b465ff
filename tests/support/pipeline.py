"""The whole pipeline as `engagement run` starts it, in a child process, against the test's Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.env import REDIS_URL


def sampled_frames(info: dict, fps: float = 2.0) -> int:
    """Frames capture emits from a file at `fps`: one per 1/fps seconds of media time."""
    return int(info["seconds"] * fps + 0.5)


def launcher_command(source: str, report_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "shared.cli", "run", "--source", source, "--report-dir", str(report_dir),
            "--redis-url", REDIS_URL, *extra]


def start_launcher(source: str, report_dir: Path, env: dict | None = None, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(launcher_command(source, report_dir, *extra), env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
