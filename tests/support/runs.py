"""Running `engagement` as a new user would: a subprocess in a folder of its own.

Every run is the real command with the test's folder as its working directory, so "nothing
left behind" can be checked: no process started from that folder still alive, and no file
or folder in it that was not there before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def engagement(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Outcome:
    """`engagement ARGS` in `cwd`; the environment without any setting a developer may have exported."""
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REPORT_DIR", "FPS", "RECORD", "MODEL")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "engagement.cli", *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    return Outcome(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def processes_from(folder: Path) -> list[psutil.Process]:
    """Live processes started in `folder` or naming it (a private redis-server's --dir)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "cwd"]):
        try:
            if p.pid == os.getpid():
                continue
            cwd = p.info["cwd"] or ""
            cmd = " ".join(p.info["cmdline"] or [])
            if cwd.startswith(str(folder)) or str(folder) in cmd:
                if p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_gone(folder: Path, seconds: float = 10.0) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while (left := processes_from(folder)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}
