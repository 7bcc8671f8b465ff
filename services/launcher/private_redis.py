"""A redis-server for a local run when no REDIS_URL is given, that never outlives the launcher.

Its data (append-only file) lives in the run's state folder, not a temp folder: if the
launcher is killed mid-class, the next `engagement run` starts a Redis on the same folder
and writes the interrupted class's report from it. The server is started through a small
Python step that asks the kernel (prctl PR_SET_PDEATHSIG) to SIGKILL it when the launcher
dies, whatever the way (even SIGKILL, which no handler sees), then execs redis-server (the
request survives exec).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import redis

from shared.ports import free_ports

# Runs in the child: set the parent-death signal, make sure the parent did not die before
# that, then become redis-server.
_EXEC_WITH_PDEATHSIG = """
import ctypes, os, signal, sys
PR_SET_PDEATHSIG = 1
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def spawn_bound_to_parent(argv: list[str], parent_pid: int, **kwargs: object) -> subprocess.Popen:
    """Start `argv` so that it gets SIGKILL when the process `parent_pid` (us) dies."""
    return subprocess.Popen([sys.executable, "-c", _EXEC_WITH_PDEATHSIG, str(parent_pid), *argv],
                            **kwargs)  # type: ignore[arg-type]


class PrivateRedis:
    def __init__(self, data_dir: Path, parent_pid: int) -> None:
        if not shutil.which("redis-server"):
            raise RuntimeError("no REDIS_URL set and no redis-server on PATH: install Debian's "
                               "redis-server (./scripts/setup.sh does) or set REDIS_URL")
        self.port = free_ports(1)[0]
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = spawn_bound_to_parent(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)],
            parent_pid, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.BusyLoadingError:
                time.sleep(0.05)
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop(keep_data=True)
                    raise RuntimeError(f"private redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def stop(self, keep_data: bool = False) -> None:
        """Stop the server; its data is removed unless `keep_data` (a report still to write)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not keep_data:
            shutil.rmtree(self.dir, ignore_errors=True)
