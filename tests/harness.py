"""Run one pipeline service in-process on a thread, with real ZeroMQ sockets.

`Service.run` installs signal handlers, which only the main thread may do, so tests drive
`start`, `loop` and `finish` themselves: the same steps, on a thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import msgspec
import zmq

from shared.bus.messages import Message, decode, encode
from shared.ops.config import Settings, load_settings
from shared.ops.service import Service


def settings_for(service: str, **values: Any) -> Settings:
    """Defaults of `service` (no environment), metrics off, `values` overriding."""
    return msgspec.structs.replace(load_settings(service, argv=[], env={}), metrics_port=0, **values)


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
        self.service.start()
        self.thread.start()
        return self.service

    def join(self, timeout: float = 30.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "service loop did not end"

    def __exit__(self, *exc: object) -> None:
        self.service.stop.set()
        self.thread.join(15)
        self.service.finish()
        if self.error is not None:
            raise self.error


class Peer:
    """The test's side of a link: a raw socket that sends or receives whole messages."""

    def __init__(self, sock_type: int, endpoint: str, bind: bool, hwm: int | None = None) -> None:
        self.socket = zmq.Context.instance().socket(sock_type)
        self.socket.setsockopt(zmq.LINGER, 0)
        if hwm is not None:  # a consumer that takes only what it reads (not a thousand messages ahead)
            self.socket.setsockopt(zmq.RCVHWM, hwm)
            self.socket.setsockopt(zmq.RCVBUF, 64 * 1024)
        if sock_type == zmq.SUB:
            self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        (self.socket.bind if bind else self.socket.connect)(endpoint)

    def send(self, header: dict, payload: bytes = b"") -> None:
        self.socket.send_multipart(encode(header, payload))

    def send_raw(self, parts: list[bytes]) -> None:
        self.socket.send_multipart(parts)

    def recv(self, timeout: float = 10.0) -> Message:
        assert self.socket.poll(int(timeout * 1000)), "no message arrived in time"
        return decode(self.socket.recv_multipart())

    def recv_until(self, kind: str, timeout: float = 20.0) -> list[Message]:
        """Every message up to and including the first of `kind`."""
        got: list[Message] = []
        deadline = time.monotonic() + timeout
        while not got or got[-1].kind != kind:
            assert time.monotonic() < deadline, f"no {kind} within {timeout} s (got {len(got)} messages)"
            if self.socket.poll(100):
                got.append(decode(self.socket.recv_multipart()))
        return got

    def recv_until_eos(self, timeout: float = 30.0) -> list[Message]:
        return self.recv_until("eos", timeout)

    def close(self) -> None:
        self.socket.close()
