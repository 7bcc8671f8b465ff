"""Fixtures for end-to-end runs: a real sample video, a Redis URL, the launcher as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.sample_video import make_sample_video

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory) -> dict:
    """8 s of 640x480 video at 30 FPS, one real face that leaves the frame twice."""
    return make_sample_video(tmp_path_factory.mktemp("video") / "sample.avi", seconds=8.0, faces=1)


def sampled_frames(info: dict, fps: float = 2.0) -> int:
    """Frames capture emits from a file at `fps`: one per 1/fps seconds of media time."""
    return int(info["seconds"] * fps + 0.5)


def launcher_command(source: str, report_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "shared.cli", "run", "--source", source, "--report-dir", str(report_dir),
            "--redis-url", REDIS_URL, *extra]


def start_launcher(source: str, report_dir: Path, env: dict | None = None, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(launcher_command(source, report_dir, *extra), env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
