"""The whole pipeline as `engagement run` starts it, in a child process, against the test's Redis (and off
a window on a real X server, for the video-call tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.env import REDIS_URL
from tools.xdisplay import player, xvfb


def sampled_frames(info: dict, fps: float = 2.0) -> int:
    """Frames capture emits from a file at `fps`: one per 1/fps seconds of media time."""
    return int(info["seconds"] * fps + 0.5)


def launcher_command(source: str, report_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "engagement.cli", "run", "--source", source, "--report-dir", str(report_dir),
            "--redis-url", REDIS_URL, *extra]


def start_launcher(source: str, report_dir: Path, env: dict | None = None, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(launcher_command(source, report_dir, *extra), env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@dataclass
class WindowRun:
    """What `engagement run` on a window gave: its exit code, its stdout and its stderr."""

    code: int
    out: str
    err: str


def run_off_a_window(video: str, title: str, report_dir: Path, watch_seconds: float, left: int = 40,
                     top: int = 30, size: tuple[int, int] | None = None) -> WindowRun:
    """A video call watched off the screen: on a real X server (Xvfb), ffplay plays `video` in a window
    titled `title` at (left, top), and `engagement run --source window:TITLE` captures it. Once every
    service is up the call goes on for `watch_seconds`, then its window closes: the class ends."""
    with xvfb() as display, player(display, video, title, left=left, top=top, size=size) as ffplay:
        launcher = start_launcher(f"window:{title}", report_dir, {"DISPLAY": display, "HEADLESS": "1"})
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(launcher.stderr or []), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 120
            while not any("all services up" in line for line in lines):
                assert launcher.poll() is None, "".join(lines)
                assert time.monotonic() < deadline, "the pipeline did not start"
                time.sleep(0.2)
            time.sleep(watch_seconds)
            ffplay.terminate()  # the call's window closes
            out, _ = launcher.communicate(timeout=120)
        finally:
            if launcher.poll() is None:
                launcher.kill()
                launcher.wait()
        reader.join(5)
    return WindowRun(launcher.returncode, out, "".join(lines))
