"""The inference service as its own process, fed and read over real ZeroMQ sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import zmq

from shared.bus.messages import decode
from tests.support.metrics import Samples, scrape

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Harness:
    """A PUSH socket feeding the service and a PULL socket reading what it sends."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        ctx = zmq.Context.instance()
        self.push, self.pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
        self.push.setsockopt(zmq.LINGER, 0)
        self.pull.setsockopt(zmq.LINGER, 0)
        in_port = self.push.bind_to_random_port("tcp://127.0.0.1")
        out_port = self.pull.bind_to_random_port("tcp://127.0.0.1")
        self.metrics_port = _free_port()
        cmd = [sys.executable, "-m", "engagement.cli", "inference", "--batches-in", f"pull+connect:tcp://127.0.0.1:{in_port}",
               "--predictions-out", f"push+connect:tcp://127.0.0.1:{out_port}",
               "--metrics-port", str(self.metrics_port), *args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def send(self, parts: list) -> None:
        self.push.send_multipart(parts)

    def receive(self, timeout: float = 60.0):
        assert self.pull.poll(int(timeout * 1000)), "the service sent nothing"
        return decode(self.pull.recv_multipart())

    def metrics(self) -> Samples:
        return scrape(self.metrics_port, timeout=5)

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        self.push.close()
        self.pull.close()
        return self.proc.returncode, err
