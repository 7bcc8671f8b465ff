"""Run the aggregator or reporter in-process on a thread, with real sockets and real Redis.

`Service.run` installs signal handlers (main thread only), so the harness drives the same
steps itself: setup, open_sockets, loop, on_stop, close. Every run gets its own Redis key
prefix, so parallel test runs never see each other's totals.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import redis

from shared.bus.messages import Header, make_header
from shared.ops.ports import free_ports

MODEL = {"name": "baseline-attention", "kind": "frame", "baseline": True, "affect": False,
         "labels": ["engaged", "slightly bored", "bored", "checked out"], "engine": "litert-facemesh", "device": "cpu"}


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def endpoints() -> tuple[str, str]:
    a, b = free_ports(2)
    return f"tcp://127.0.0.1:{a}", f"tcp://127.0.0.1:{b}"


def predictions_header(session: str, seq: int, students: list[tuple[int, int]], stream: str = "cam0",
                       t_media: float | None = None, model: dict | None = None,
                       faces: list[dict] | None = None) -> Header:
    """A `predictions` message: students = [(student id, level)]; faces default to the same boxes."""
    preds = []
    for student, level in students:
        probs = [0.05] * 4
        probs[level] = 0.85
        preds.append({"student": student, "box": [40 + 150 * (student % 4), 60, 120, 140], "conf": 0.99,
                      "probs": probs, "level": level, "signals": {}})
    if faces is None:
        faces = [{"student": p["student"], "box": p["box"], "conf": p["conf"]} for p in preds]
    t = time.time()
    return make_header("predictions", session, stream, seq, t, {"inference": t}, model=model or MODEL,
                       predictions=preds, faces=faces, t_media=seq * 0.5 if t_media is None else t_media)


def eos_header(session: str, seq: int, stream: str = "cam0", reason: str = "end_of_file") -> Header:
    return make_header("eos", session, stream, seq, time.time(), {}, reason=reason)


class PrivateRedis:
    """A redis-server of the test's own, append-only file on, that can be stopped and restarted."""

    def __init__(self, directory: Path, password: str = "", persistent: bool = True) -> None:
        self.port = free_ports(1)[0]
        self.dir = directory
        self.password = password
        self.persistent = persistent  # False: appendonly no (and no save points), a Redis that keeps nothing
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        extra = ["--requirepass", self.password] if self.password else []
        self.proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "yes" if self.persistent else "no", "--dir", str(self.dir),
                                      *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "private redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: Redis flushes the append-only file and exits
            self.proc.wait(10)
