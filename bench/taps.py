"""A test-owned hop spliced into one link of a running pipeline.

The producer's *_OUT is pointed at the tap's PULL and the consumer's *_IN at the tap's
PUSH (through `launcher.run(..., adjust_env=tap.rewire)`); every message is decoded,
handed to `on_message`, and passed on unchanged. Tests count what a stage really published
instead of trusting the next stage's bookkeeping.
"""

from __future__ import annotations

import threading
import time

import zmq

from shared.bus.messages import BadMessage, Message, decode
from shared.ops.ports import free_ports


class LinkTap:
    def __init__(self, link: str, producer: str, consumer: str, gather_seconds: float = 0.0) -> None:
        self.link, self.producer, self.consumer = link, producer, consumer
        # As the consumer's own loop (GATHER_SECONDS): messages gather this long after a run is passed on, so a
        # benchmark's tap does not wake once a message where the service it stands before wakes once a run.
        self.gather_seconds = gather_seconds
        self.in_port, self.out_port = free_ports(2)
        ctx = zmq.Context.instance()
        self.pull = ctx.socket(zmq.PULL)
        self.pull.bind(f"tcp://127.0.0.1:{self.in_port}")
        self.push = ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.bind(f"tcp://127.0.0.1:{self.out_port}")
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"tap-{link}", daemon=True)
        self.thread.start()

    def rewire(self, envs: dict[str, dict[str, str]]) -> None:
        envs[self.producer][f"{self.link.upper()}_OUT"] = f"push+connect:tcp://127.0.0.1:{self.in_port}"
        envs[self.consumer][f"{self.link.upper()}_IN"] = f"pull+connect:tcp://127.0.0.1:{self.out_port}"

    def on_message(self, msg: Message, arrived: float) -> None:
        """Record what a test needs; runs on the tap's thread under `self.lock`."""

    def _run(self) -> None:
        while not self.stop.is_set():
            if not self.pull.poll(100):
                continue
            while True:  # everything waiting, then the gathering pause
                try:
                    parts = self.pull.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._pass(parts)
            if self.gather_seconds:
                self.stop.wait(self.gather_seconds)

    def _pass(self, parts: list[bytes]) -> None:
        arrived = time.time()
        try:
            msg = decode(parts)
        except BadMessage:
            msg = None
        if msg is not None:
            with self.lock:
                self.on_message(msg, arrived)
        self.push.send_multipart(parts)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.pull.close(0)
        self.push.close(0)
