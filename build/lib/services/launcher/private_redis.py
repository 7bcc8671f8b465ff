"""A throw-away redis-server for a local run when no REDIS_URL is given."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from services.launcher.ports import free_ports


class PrivateRedis:
    def __init__(self) -> None:
        if not shutil.which("redis-server"):
            raise RuntimeError("no REDIS_URL set and no redis-server on PATH: install Debian's "
                               "redis-server (./scripts/setup.sh does) or set REDIS_URL")
        self.port = free_ports(1)[0]
        self.dir = Path(tempfile.mkdtemp(prefix="engagement-redis-"))
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "yes", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"private redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
