"""The ZAP handler of a process that binds CURVE links: it answers each handshake's "may this
client key in?" from the deployment's trusted public keys (`*.key` beside the secret file).

Our own, on a plain thread blocked in `zmq.Poller`, rather than pyzmq's ThreadAuthenticator: that
one polls sockets made outside its asyncio loop with `zmq.asyncio.Poller` (a pattern pyzmq's own
issue 1558 shows hanging), and in the compose stack a bound link's first CURVE handshake hung until
the client gave it up after HANDSHAKE_IVL (30 s) and tried again; the second request woke the
handler, which then answered both (the server's failure event of the first, ECONNRESET, came just
then). A blocked poll on the socket itself misses nothing. It also keeps asyncio out of every
service that binds a CURVE link.

ZAP (RFC 27): a request is [version, request id, domain, address, identity, mechanism,
credentials...]; the reply [version, request id, status code, status text, user id, metadata].
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by libzmq: every socket of the context asks here
VERSION = b"1.0"


class ZapHandler:
    """Answers the ZAP requests of one ZeroMQ context on a thread of its own; `close` ends it."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.context = context
        self.trusted: frozenset[bytes] = frozenset()  # z85 public keys
        self.answered = 0
        self.refused = 0
        # Bound here, before the caller binds any CURVE socket: no handshake can come first.
        self._zap: zmq.Socket[bytes] = context.socket(zmq.REP)
        self._zap.linger = 0
        self._zap.bind(ZAP_ENDPOINT)
        self._wake_endpoint = f"inproc://zap-stop-{uuid.uuid4().hex}"
        self._wake_in: zmq.Socket[bytes] = context.socket(zmq.PAIR)
        self._wake_in.linger = 0
        self._wake_in.bind(self._wake_endpoint)
        self._wake_out: zmq.Socket[bytes] = context.socket(zmq.PAIR)
        self._wake_out.linger = 0
        self._wake_out.connect(self._wake_endpoint)
        self._thread = threading.Thread(target=self._run, name="zap", daemon=True)
        self._thread.start()

    def trust(self, location: str | Path) -> None:
        """Trust the public keys of the certificates (`*.key`) in `location` (replacing the last set):
        a process that binds with another deployment's keys (a test) trusts those."""
        keys = zmq.auth.load_certificates(str(location))
        self.trusted = frozenset(keys)

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._zap, zmq.POLLIN)
        poller.register(self._wake_in, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())  # blocks until a request or the stop: no timer, no wake-ups
                if self._wake_in in ready:
                    return
                if self._zap in ready:
                    self._answer(self._zap.recv_multipart())
        except zmq.ZMQError as exc:  # the context is terminating under it
            log.debug("zap handler ends: %s", exc)

    def _answer(self, request: list[bytes]) -> None:
        if len(request) < 6:
            log.warning("a ZAP request of %d frames: refused", len(request))
            if len(request) >= 2:
                self._reply(request[1], b"400", b"Not enough frames")
            return
        version, request_id, _domain, address, _identity, mechanism = request[:6]
        credentials = request[6:]
        if version != VERSION:
            self._reply(request_id, b"400", b"Invalid version")
            return
        if mechanism == b"CURVE" and len(credentials) == 1 and len(credentials[0]) == 32:
            key = z85.encode(credentials[0])
            if key in self.trusted:
                self._reply(request_id, b"200", b"OK", key)
                return
            self.refused += 1
            log.info("a CURVE client from %s with a key not trusted here: refused", address.decode(errors="replace"))
            self._reply(request_id, b"400", b"Unknown key")
            return
        if mechanism == b"NULL":  # a plain socket of this process given a ZAP domain: as ZeroMQ without ZAP
            self._reply(request_id, b"200", b"OK")
            return
        self.refused += 1
        self._reply(request_id, b"400", b"Mechanism not allowed")

    def _reply(self, request_id: bytes, code: bytes, text: bytes, user_id: bytes = b"") -> None:
        self._zap.send_multipart([VERSION, request_id, code, text, user_id if code == b"200" else b"", b""])
        self.answered += 1

    def close(self) -> None:
        """End the thread and close its sockets (before the context terminates: an open socket holds it)."""
        if self._thread.is_alive():
            self._wake_out.send(b"stop")
            self._thread.join(5)
        for sock in (self._wake_out, self._wake_in, self._zap):
            sock.close(0)
