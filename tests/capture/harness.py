"""Run a pipeline service in-process on a thread, with real ZeroMQ sockets on free ports.

`Service.run` installs signal handlers, which only the main thread may do, so the harness
drives the same steps itself: setup, open_sockets, loop, on_stop, close. Tests talk to the
service through real sockets bound/connected on free loopback ports.
"""

from __future__ import annotations

import time

import zmq

from services.launcher.ports import free_ports
from shared.messages import Message, decode, encode


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
