"""ZeroMQ sockets from connection strings, with counted drops and validated receives.

A connection string is `<type>+<bind|connect>:<endpoint>[,<endpoint>...]`, e.g.
`push+bind:tcp://127.0.0.1:5551`. Several endpoints, comma-separated, are all bound or all
connected by one socket: a consumer fed by several producers (one capture per camera) connects
to each, `pull+connect:tcp://capture-front:5551,tcp://capture-back:5551`, and ZeroMQ queues
fairly between them. One zmq.Context per process (zmq.Context.instance()).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import zmq

from shared.bus import metrics
from shared.bus.backoff import LogThrottle
from shared.bus.dial import Dialer
from shared.bus.link_peers import PeerCounter
from shared.bus.links import SOCKET_TYPES, SPEC_FORM, spec_problem
from shared.bus.messages import CONTROL_KINDS, BadMessage, Header, Message, Payload, decode, encode

log = logging.getLogger(__name__)

_TYPES = {name: getattr(zmq, name.upper()) for name in SOCKET_TYPES}  # ZeroMQ's socket type by its name
_SENDING = {"push", "pub", "dealer", "router"}
# Kernel socket buffers per bus connection. HWM bounds messages in ZeroMQ's own queues, but
# Linux autotunes TCP buffers up to several MB, which holds ~60 face crops per link: a slow
# stage then built up minutes of latency before the source had to drop (seen in
# tests/reliability: 100 frames queued, 155 s old). 128 KB keeps the queue in messages.
SOCKET_BUFFER_BYTES = 128 * 1024
# A consumer's link ZeroMQ has given up this long (no peer, no attempt) is connected again (Receiver.heal).
RECONNECT_AFTER_SECONDS = 5.0


@dataclass(frozen=True)
class SocketSpec:
    type: str
    bind: bool
    endpoint: str  # one endpoint, or several comma-separated

    @property
    def endpoints(self) -> list[str]:
        return self.endpoint.split(",")

    @classmethod
    def parse(cls, text: str) -> SocketSpec:
        if spec_problem(text) is not None:
            raise ValueError(f"bad socket spec {text!r}: want {SPEC_FORM}")
        head, endpoint = text.split(":", 1)
        sock_type, how = head.split("+", 1)
        return cls(sock_type, how == "bind", endpoint)


_authenticator = None  # one ZAP authenticator per process, started on first CURVE bind


def _apply_curve(sock: zmq.Socket[bytes], spec: SocketSpec, secret_file: str) -> None:
    """CURVE encryption and authentication, one key pair per deployment.

    `secret_file` is a zmq certificate made by `engagement make-curve-keys DIR`. Every
    service of a deployment gets the same pair: the binding side is the CURVE server, the
    connecting side presents the pair as its client key, and the server's ZAP handler
    accepts only client public keys found beside the secret file (`*.key`). A peer without
    them completes no handshake and receives nothing.
    """
    global _authenticator
    import zmq.auth
    from zmq.auth.thread import ThreadAuthenticator

    public, secret = zmq.auth.load_certificate(secret_file)
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key")
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    if spec.bind:
        if _authenticator is None:
            _authenticator = ThreadAuthenticator(zmq.Context.instance())
            _authenticator.start()
        # Per bind: a process that binds with another deployment's keys (a test) trusts those.
        _authenticator.configure_curve(domain="*", location=str(Path(secret_file).parent))
        sock.curve_server = True
    else:
        sock.curve_serverkey = public


def stop_authenticator() -> None:
    """Stop the ZAP authenticator (before the context terminates: its open socket would hold
    term() for its whole bound, 6 s at every exit of a CURVE service). Links already made keep
    their peers: only a new handshake needs it."""
    global _authenticator
    if _authenticator is not None:
        _authenticator.stop()
        _authenticator = None


def make_curve_keys(directory: str) -> Path:
    """Create the deployment's key pair; returns the secret file to set as CURVE_SERVER_KEY."""
    import zmq.auth

    Path(directory).mkdir(parents=True, exist_ok=True)
    _, secret_file = zmq.auth.create_certificates(directory, "bus")
    return Path(secret_file)


def open_socket(spec_text: str, hwm: int = 4, curve_key_file: str = "") -> zmq.Socket[bytes]:
    """The socket of `spec_text`, bound or connected."""
    spec = SocketSpec.parse(spec_text)
    sock = make_socket(spec, hwm, curve_key_file)
    attach(sock, spec)
    return sock


def make_socket(spec: SocketSpec, hwm: int = 4, curve_key_file: str = "") -> zmq.Socket[bytes]:
    """The socket of `spec` with its options, not yet bound or connected: a monitor attached now
    (link_peers.PeerCounter) sees its first handshake, which on a local link can come within
    microseconds of the connect (a counter attached after it missed it: the link read as peerless,
    and a working link was connected again 5 s later)."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(_TYPES[spec.type])
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.SNDBUF, SOCKET_BUFFER_BYTES)
    sock.setsockopt(zmq.RCVBUF, SOCKET_BUFFER_BYTES)
    # A sender's queued messages get 5 s to leave on close (control messages must not be
    # lost). A receiver has nothing worth waiting for: with linger, a SUB whose publisher is
    # gone held process exit for 5 s over its queued subscription.
    sock.setsockopt(zmq.LINGER, 5000 if spec.type in _SENDING else 0)
    if spec.type == "sub":
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    if curve_key_file:
        if not Path(curve_key_file).is_file():
            raise FileNotFoundError(f"CURVE key file {curve_key_file} not found")
        _apply_curve(sock, spec, curve_key_file)
    return sock


def attach(sock: zmq.Socket[bytes], spec: SocketSpec, link: str = "") -> Dialer | None:
    """Bind or connect `sock` to every endpoint of `spec`. A connecting socket's host names are looked
    up off ZeroMQ's I/O thread (shared/bus/dial.py): its Dialer, whose `poll` connects names found later."""
    if not spec.bind:
        return Dialer(sock, spec.endpoints, link or spec.endpoints[0])
    for endpoint in spec.endpoints:
        sock.bind(endpoint)
    return None


class Sender:
    """Sends messages; frames may be dropped when `droppable`, control messages never."""

    def __init__(self, service: str, spec_text: str, stop: threading.Event, hwm: int = 4,
                 curve_key_file: str = "", link: str = "") -> None:
        self.service = service
        self.spec = SocketSpec.parse(spec_text)
        if self.spec.type not in _SENDING:
            raise ValueError(f"{spec_text}: a {self.spec.type} socket cannot send")
        self.socket = make_socket(self.spec, hwm, curve_key_file)
        self.stop = stop
        # A bound PUSH deals to every peer: a second one takes messages away (engagement_link_peers).
        self.peers = PeerCounter(self.socket, service, link) if link and self.spec.type == "push" \
            and self.spec.bind else None
        self.dialer = attach(self.socket, self.spec, link)  # after the counter: it sees the first peer too
        self._sent: dict[str, Any] = {}  # kind -> its counter's child (labels() costs more than the count)

    def heal(self) -> None:
        """A connecting sender: connect the names looked up since (call on the owner's tick)."""
        if self.dialer is not None:
            self.dialer.tick(short_of_peers=bool(self.dialer.pending()))

    def send(self, header: Header | dict[str, Any], payload: Payload = b"", droppable: bool = False) -> bool:
        """Send one message (a plain dict only from tests that send malformed ones). False if dropped (counted)."""
        kind = header.kind if isinstance(header, Header) else str(header["kind"])
        parts = encode(header, payload)
        if droppable and kind not in CONTROL_KINDS:
            try:
                self.socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                metrics.FRAMES_DROPPED.labels(self.service, "queue_full").inc()
                return False
        else:
            self._send_blocking(parts, kind)
        sent = self._sent.get(kind)
        if sent is None:
            sent = self._sent[kind] = metrics.MESSAGES_SENT.labels(self.service, kind)
        sent.inc()
        return True

    def _send_blocking(self, parts: list[Payload], kind: str) -> None:
        try:  # room on the link, as nearly always: sent without a poll (pyzmq makes a Poller for each)
            self.socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            return
        except zmq.Again:
            pass
        # Wait for room, but wake up to notice a stop; control messages get a last grace period.
        deadline = None
        while True:
            if self.socket.poll(100, zmq.POLLOUT):
                self.socket.send_multipart(parts, copy=False)
                return
            if self.stop.is_set():
                deadline = deadline or time.monotonic() + (5.0 if kind in CONTROL_KINDS else 0.5)
                if time.monotonic() > deadline:
                    metrics.FRAMES_DROPPED.labels(self.service, "stopping").inc()
                    log.warning("dropped a %s message at shutdown: no consumer took it", kind)
                    return

    def close(self) -> None:
        if self.peers is not None:
            self.peers.close()
        self.socket.close()


class Receiver:
    """Receives and validates messages; malformed ones are counted, logged and skipped."""

    def __init__(self, service: str, spec_text: str, hwm: int = 4, curve_key_file: str = "",
                 expect: tuple[str, ...] | None = None, link: str = "") -> None:
        self.service = service
        self.expect = expect
        self.spec = SocketSpec.parse(spec_text)
        self.link = link or self.spec.endpoints[0]
        self.socket = make_socket(self.spec, hwm, curve_key_file)
        self._subscribed = self.spec.type == "sub"  # make_socket subscribes a sub socket to everything
        self._rejection_log = LogThrottle(1.0)  # a flood of garbage must not flood the log
        # A link this process connects: watched, so that one ZeroMQ gave up on is connected again (heal).
        self.watch = None if self.spec.bind else PeerCounter(self.socket, service, self.link, gauge=False,
                                                             expected=len(self.spec.endpoints))
        self.dialer = attach(self.socket, self.spec, self.link)  # after the watch: it sees the first handshake
        self._failures_seen = 0
        self._healed_at = -1.0  # when heal last connected it again (a stretch without a peer goes on from there)
        self._received: dict[str, Any] = {}  # kind -> its counter's child, as the sender's
        self._latency = metrics.LATENCY_SECONDS.labels(self.service)

    def heal(self, after: float = RECONNECT_AFTER_SECONDS) -> bool:
        """Call on the owner's tick. Connects the host names looked up since (shared/bus/dial.py), looks
        them up again while the link is short of peers, and connects again a link with no peer and no
        attempt for `after` seconds. ZeroMQ keeps retrying a lost connection or a producer that is away
        (its attempts show), but gives an endpoint up for good after a protocol error in its handshake;
        and a connect to an address that does not answer yet (a container starting) waits for TCP's
        own retries, seconds apart. A handshake under way is never cut (ZeroMQ times it out itself).
        True if it reconnected."""
        if self.watch is None or self.dialer is None:
            return False
        self.dialer.tick(short_of_peers=self.watch.peers < self.watch.expected)
        quiet = min(self.watch.given_up_for(), time.monotonic() - self.dialer.connected_at)
        if quiet < after or not self.dialer.addresses:
            return False
        addresses = self.dialer.reconnect()
        # Said at info the first time in a stretch without a peer (a connect left pending while its
        # producer starts is common), as a warning after a failed handshake (ZeroMQ gave it up).
        failed = self.watch.failures > self._failures_seen
        first = self.watch.alone_since != self._healed_at
        self._failures_seen = self.watch.failures
        self.watch.alone_since = self._healed_at = time.monotonic()
        metrics.LINK_RECONNECTS.labels(self.service, self.link).inc()
        log.log(logging.WARNING if failed else logging.INFO if first else logging.DEBUG,
                "link %s: no peer and no attempt under way for %.0f s%s: connecting to %s again", self.link,
                after, " after a failed handshake" if failed else "", ", ".join(addresses))
        return True

    @property
    def subscribed(self) -> bool:
        """Whether a SUB link takes its publishers' messages (it does from its start)."""
        return self._subscribed

    def subscribe(self, on: bool) -> None:
        """A SUB link takes everything its publishers send (on) or nothing (off). ZeroMQ filters at the
        publisher: a message no subscriber takes is dropped there, never copied onto the link."""
        if self.spec.type != "sub":
            raise ValueError(f"link {self.link}: only a sub socket subscribes")
        if on != self._subscribed:  # subscriptions count: one on, one off
            self.socket.setsockopt(zmq.SUBSCRIBE if on else zmq.UNSUBSCRIBE, b"")
            self._subscribed = on

    def read(self) -> Message | None:
        """Read one waiting message (call after poll says readable). None if it was bad.

        The payload is not copied: it is a read-only view of the received ZeroMQ frame, which
        stays valid for as long as the message (or a view of its payload) is referenced."""
        frames = self.socket.recv_multipart(copy=False)
        try:
            msg = decode([frame.buffer for frame in frames], self.expect)
        except BadMessage as exc:
            metrics.MESSAGES_REJECTED.labels(self.service, exc.reason).inc()
            if self._rejection_log.ready():
                log.warning("rejected a message: %s", exc)
            return None
        received = self._received.get(msg.kind)
        if received is None:
            received = self._received[msg.kind] = metrics.MESSAGES_RECEIVED.labels(self.service, msg.kind)
        received.inc()
        self._latency.observe(max(0.0, time.time() - msg.header.t_capture))
        return msg

    def waiting(self) -> bool:
        """Whether a message can be read now (ZeroMQ's own flag: no poll)."""
        return bool(cast(int, self.socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN)

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
        self.socket.close()
