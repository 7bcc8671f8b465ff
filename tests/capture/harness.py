"""Run a pipeline service in-process on a thread, with real ZeroMQ sockets on free ports.

`Service.run` installs signal handlers, which only the main thread may do, so the harness
drives the same steps itself: setup, open_sockets, loop, on_stop, close. Tests talk to the
service through real sockets bound/connected on free loopback ports.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import zmq

from services.launcher.ports import free_ports
from shared.config import load_settings
from shared.messages import Message, decode, encode
from shared.service import Service


def settings_for(service: str, **values: Any):  # type: ignore[no-untyped-def]
    settings = load_settings(service, argv=[], env={})
    settings.values.update(metrics_port=0, **values)
    return settings


class Running:
    """Context manager: the service runs on a thread until the block ends."""

    def __init__(self, cls: type[Service], **values: Any) -> None:
        self.service = cls(settings_for(cls.name, **values))
        self.thread = threading.Thread(target=self._run, name=f"svc-{cls.name}", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.service.loop()
        except BaseException as exc:  # surfaced by __exit__
            self.error = exc

    def __enter__(self) -> Service:
        self.service.setup()
        self.service.open_sockets()
        self.service._set_state("running")
        self.thread.start()
        return self.service

    def join(self, timeout: float = 30.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "service loop did not end"

    def __exit__(self, *exc: object) -> None:
        self.service.stop.set()
        self.thread.join(15)
        try:
            self.service.on_stop()
        finally:
            for sock in [*self.service.senders.values(), *self.service.receivers.values()]:
                sock.close()
        if self.error is not None:
            raise self.error


class Peer:
    """The test's side of a link: a raw socket that sends or receives whole messages."""

    def __init__(self, sock_type: int, endpoint: str, bind: bool) -> None:
        self.socket = zmq.Context.instance().socket(sock_type)
        self.socket.setsockopt(zmq.LINGER, 0)
        (self.socket.bind if bind else self.socket.connect)(endpoint)

    def send(self, header: dict, payload: bytes = b"") -> None:
        self.socket.send_multipart(encode(header, payload))

    def send_raw(self, parts: list[bytes]) -> None:
        self.socket.send_multipart(parts)

    def recv(self, timeout: float = 10.0) -> Message:
        assert self.socket.poll(int(timeout * 1000)), "no message arrived in time"
        return decode(self.socket.recv_multipart())

    def recv_until_eos(self, timeout: float = 30.0) -> list[Message]:
        """Every message up to and including the first eos."""
        got: list[Message] = []
        deadline = time.monotonic() + timeout
        while not got or got[-1].kind != "eos":
            assert time.monotonic() < deadline, f"no eos after {len(got)} messages"
            got.append(self.recv(max(0.1, deadline - time.monotonic())))
        return got

    def close(self) -> None:
        self.socket.close(0)


def link(name: str) -> tuple[str, str, str]:
    """A free-port link: (producer spec, consumer spec, endpoint)."""
    port = free_ports(1)[0]
    endpoint = f"tcp://127.0.0.1:{port}"
    if name == "preview":
        return f"pub+bind:{endpoint}", f"sub+connect:{endpoint}", endpoint
    return f"push+bind:{endpoint}", f"pull+connect:{endpoint}", endpoint


def counter(metric, *labels: str) -> float:  # type: ignore[no-untyped-def]
    return metric.labels(*labels)._value.get()
