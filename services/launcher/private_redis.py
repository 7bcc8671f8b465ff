"""A redis-server for a local run when no REDIS_URL is given, that never outlives the launcher.

Its data (append-only file) lives in the run's state folder, not a temp folder: if the
launcher is killed mid-class, the next `engagement run` starts a Redis on the same folder
and writes the interrupted class's report from it. The server is started through a small
Python step that asks the kernel (prctl PR_SET_PDEATHSIG) to SIGKILL it when the launcher
dies, whatever the way (even SIGKILL, which no handler sees), then execs redis-server (the
request survives exec).

A server that dies mid-class (a full disk makes an append-only Redis with appendfsync always
exit) is noticed by the launcher's loop (`watch`, every 0.1 s), named in one line, and started
again on the same port: on the same data when the disk has room, else in memory only (the
aggregator's journal holds the class, and refills it: shared/data/journal.py).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import redis

from services.launcher.supervisor import how_it_ended
from shared.data.journal import free_bytes
from shared.ops.ports import free_ports

log = logging.getLogger("launcher")
MAX_RESTARTS = 5
# Less free space than this where the data lives: a restarted server keeps its data in memory only.
MIN_FREE_BYTES = 16 * 2**20

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


def spawn_bound_to_parent(argv: list[str], parent_pid: int, stdout: int | None = None,
                          stderr: int | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` so that it gets SIGKILL when the process `parent_pid` (us) dies."""
    return subprocess.Popen([sys.executable, "-c", _EXEC_WITH_PDEATHSIG, str(parent_pid), *argv],
                            stdout=stdout, stderr=stderr)


class PrivateRedis:
    def __init__(self, data_dir: Path, parent_pid: int) -> None:
        if not shutil.which("redis-server"):
            raise RuntimeError("no REDIS_URL set and no redis-server on PATH: install Debian's "
                               "redis-server (./scripts/setup.sh does) or set REDIS_URL")
        self.port = free_ports(1)[0]
        self.dir = data_dir
        self.parent_pid = parent_pid
        self.restarts = 0
        self.persistent = True
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._start()

    def _start(self) -> None:
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if self.persistent
                       else ["--appendonly", "no"])
        self.proc = spawn_bound_to_parent(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", *persistence,
             "--dir", str(self.dir)],
            self.parent_pid, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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

    def watch(self) -> bool:
        """Whether the server runs; one that died is named and started again (see the module's note). False
        once it has died more than MAX_RESTARTS times (the class goes on with the aggregator's journal)."""
        code = self.proc.poll()
        if code is None:
            return True
        if self.restarts >= MAX_RESTARTS:
            return False
        self.restarts += 1
        free = free_bytes(self.dir)
        if free < MIN_FREE_BYTES:
            self.persistent = False
        how = ("on its data" if self.persistent
               else f"in memory only ({self.dir} has {free // 1024} KB left; the aggregator's journal keeps the class)")
        log.error("the private redis-server (pid %d, port %d) %s: restarting it %s (%d/%d)",
                  self.proc.pid, self.port, how_it_ended(code), how, self.restarts, MAX_RESTARTS)
        try:
            self._start()
        except RuntimeError as exc:
            log.error("%s: the class goes on with the aggregator's journal", exc)
            return False
        return True

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
