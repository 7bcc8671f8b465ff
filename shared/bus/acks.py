"""Sent-but-unacknowledged messages, kept for resending (the ZeroMQ guide's reliable patterns).

PUSH/PULL never says whether a message was processed: what waits in a consumer's queue when
it is killed is gone. The sender keeps each message here until the consumer acknowledges
it (after its own durable write), and resends it when the acknowledgement is late, when the
consumer comes back, or before the session's `eos` (so nothing of a session arrives after
its end). The consumer must be idempotent: a resend of something it already took is
ignored there, never counted twice.

Bounded: past `max_size` entries the oldest is given up (counted by the caller), so a
consumer that never acknowledges (acks link not wired, or down for hours) costs bounded
memory and nothing else.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import zmq
from prometheus_client import Counter, Gauge

from shared.bus.backoff import Backoff, LogThrottle
from shared.bus.bus import Receiver, Sender
from shared.bus.link_peers import PeerCounter
from shared.bus.messages import Ack, Header, encode, make_header

log = logging.getLogger(__name__)

Key = tuple[str, str, int, str]  # session, stream, seq, kind


def key_of(header: Header, kind: str | None = None) -> Key:
    return (header.session, header.stream, header.seq, kind or header.kind)


@dataclass
class Pending:
    header: Header
    due: float  # monotonic time of the next resend
    backoff: Backoff  # its delays: timeout, then doubled after each resend up to the cap
    delay: float  # the delay in force
    resends: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class UnackedWindow:
    def __init__(self, max_size: int, timeout: float, cap: float = 30.0) -> None:
        self.max_size = max(1, int(max_size))
        self.timeout = float(timeout)
        self.cap = max(cap, self.timeout)
        self.pending: OrderedDict[Key, Pending] = OrderedDict()  # in send order

    def __len__(self) -> int:
        return len(self.pending)

    def sent(self, header: Header, now: float | None = None) -> int:
        """Remember a sent message; returns how many old entries were given up to make room."""
        now = time.monotonic() if now is None else now
        backoff = Backoff(self.timeout, self.cap)
        delay = backoff.next_delay()
        self.pending[key_of(header)] = Pending(header, now + delay, backoff, delay)
        evicted = 0
        while len(self.pending) > self.max_size:
            self.pending.popitem(last=False)
            evicted += 1
        return evicted

    def acked(self, key: Key) -> bool:
        return self.pending.pop(key, None) is not None

    def due(self, now: float | None = None) -> list[Header]:
        """Headers whose acknowledgement is late; each is rescheduled with a doubled delay."""
        now = time.monotonic() if now is None else now
        out = []
        for entry in self.pending.values():
            if entry.due <= now:
                entry.delay = entry.backoff.next_delay()
                entry.due = now + entry.delay
                entry.resends += 1
                out.append(entry.header)
        return out

    def take_all(self, session: str | None = None, stream: str | None = None,
                 now: float | None = None) -> list[Header]:
        """Every unacknowledged header (of one session/stream if given), in send order, rescheduled."""
        now = time.monotonic() if now is None else now
        out = []
        for (sess, strm, _seq, _kind), entry in self.pending.items():
            if (session is None or sess == session) and (stream is None or strm == stream):
                entry.due = now + entry.delay
                entry.resends += 1
                out.append(entry.header)
        return out


# --- the sending side, as a service uses it ----------------------------------------------------

RESENT = Counter("engagement_resent_total", "Messages sent again because no acknowledgement came",
                 ["service", "reason"])
UNACKED = Gauge("engagement_unacked_messages", "Sent messages not acknowledged yet", ["service"])
GIVEN_UP = Counter("engagement_unacked_given_up_total",
                   "Unacknowledged messages dropped from a full resend window (no longer resent)", ["service"])
ACKS_SENT = Counter("engagement_acks_sent_total", "Acknowledgements sent", ["service"])
ACKS_DROPPED = Counter("engagement_acks_dropped_total",
                       "Acknowledgements the sender could not take (it resends; nothing is lost)", ["service"])


class ReliableLink:
    """A Sender whose messages are kept until acknowledged and resent when they may be lost.

    Resent: after `timeout` (then with a doubling delay), at once when the consumer
    (re)connects its acknowledgement socket (a restarted consumer lost its queue), and
    before a session's `eos`: an `eos` waits (in `tick`) until every earlier message of its
    session is acknowledged, or `timeout` passes and the rest are resent ahead of it, so
    nothing of a session can reach the consumer after the session's end.
    """

    def __init__(self, service: str, sender: Sender, acks: Receiver, max_size: int, timeout: float) -> None:
        self.service = service
        self.sender = sender
        self.window = UnackedWindow(max_size, timeout)
        self.timeout = float(timeout)
        self.deferred: list[tuple[Header, float]] = []  # (eos header, deadline)
        # The consumer's (re)connections, from the acks link's watch (a socket has one monitor: the
        # receiver's, when it connects; one of its own when the acks link is bound here).
        self._own_watch = acks.watch is None
        self.watch = acks.watch or PeerCounter(acks.socket, service, acks.link, gauge=False)
        self._handshakes = self.watch.handshakes
        self._give_up_log = LogThrottle(10.0)

    def send(self, header: Header) -> None:
        self.sender.send(header)
        given_up = self.window.sent(header)
        if given_up:
            GIVEN_UP.labels(self.service).inc(given_up)
            if self._give_up_log.ready():
                log.warning("resend window full (%d unacknowledged): the oldest is no longer kept",
                            self.window.max_size)
        UNACKED.labels(self.service).set(len(self.window))

    def end(self, eos: Header) -> None:
        """Send an eos once its session's earlier messages are acknowledged (see class doc)."""
        self.deferred.append((eos, time.monotonic() + self.timeout))
        self._release_eos()

    def acked(self, ack: Ack) -> None:
        for key in acked_keys(ack):
            self.window.acked(key)
        UNACKED.labels(self.service).set(len(self.window))

    def tick(self) -> None:
        if self._consumer_connected():
            self._resend(self.window.take_all(), "reconnect")
        self._resend(self.window.due(), "timeout")
        self._release_eos()

    def close(self) -> None:
        """At stop: resend what is unacknowledged ahead of every waiting eos, then send them."""
        for eos, _ in self.deferred:
            self._resend(self.window.take_all(eos.session, eos.stream), "before_eos")
            self.send(eos)
        self.deferred.clear()
        if self._own_watch:
            self.watch.close()

    def _release_eos(self) -> None:
        now = time.monotonic()
        waiting = []
        for eos, deadline in self.deferred:
            session, stream = eos.session, eos.stream
            unacked = any(k[0] == session and k[1] == stream for k in self.window.pending)
            if unacked and now < deadline:
                waiting.append((eos, deadline))
                continue
            if unacked:
                self._resend(self.window.take_all(session, stream), "before_eos")
            self.send(eos)
        self.deferred = waiting

    def _resend(self, headers: list[Header], reason: str) -> None:
        for header in headers:
            self.sender.send(header)
        if headers:
            RESENT.labels(self.service, reason).inc(len(headers))
            log.info("resent %d unacknowledged message(s) (%s)", len(headers), reason)

    def _consumer_connected(self) -> bool:
        """True once for every rise of the acks link's handshakes since the last call."""
        seen, self._handshakes = self.watch.handshakes != self._handshakes, self.watch.handshakes
        return seen


# --- the acknowledging side ---------------------------------------------------------------------

# How long an acknowledgement may wait to go with others. One message a frame woke the sender's process (in the
# latency path: inference) once a frame more, 144 times a second at 72 webcams; gathered, a few times a second.
# Far under ACK_TIMEOUT (3 s), so nothing is resent for it.
ACK_GATHER_SECONDS = 0.1
ACK_GATHER_MAX = 256  # acknowledgements in one message at most (its header stays a few KB)


def acked_keys(ack: Ack) -> list[Key]:
    """Every message one acknowledgement covers: its own (session, stream, seq) and each of `more`."""
    return [(ack.session, ack.stream, ack.seq, ack.of),
            *((ack.session, str(stream), int(seq), ack.of) for stream, seq in ack.more)]


def send_ack(service: str, sock: zmq.Socket[bytes], session: str, stream: str, seq: int, t_capture: float,
             of: str, more: list[tuple[str, int]] | None = None) -> bool:
    """Acknowledge one message (and `more` of its session and kind), never blocking: a lost ack only costs a
    resend."""
    header = make_header("ack", session, stream, seq, t_capture, {service: time.time()}, of=of, more=more or [])
    count = 1 + len(more or [])
    try:
        sock.send_multipart(encode(header), zmq.NOBLOCK)
    except zmq.Again:
        ACKS_DROPPED.labels(service).inc(count)
        return False
    ACKS_SENT.labels(service).inc(count)
    return True


@dataclass
class _Gathered:
    first: tuple[str, int, float]  # stream, seq, t_capture of the first acknowledgement
    more: list[tuple[str, int]] = field(default_factory=list)


class AckGatherer:
    """Acknowledgements gathered per (session, kind) and sent together: at the first one that comes
    ACK_GATHER_SECONDS after the last sending, at ACK_GATHER_MAX, at once with an eos's (its session's
    others go first), and whenever `flush` is called (the service's tick, its stop)."""

    def __init__(self, service: str, sock: zmq.Socket[bytes], gather_seconds: float = ACK_GATHER_SECONDS) -> None:
        self.service = service
        self.sock = sock
        self.gather_seconds = gather_seconds
        self.pending: dict[tuple[str, str], _Gathered] = {}  # (session, of) -> what waits, in arrival order
        self.count = 0
        self.sent_at = time.monotonic()

    def add(self, session: str, stream: str, seq: int, t_capture: float, of: str) -> None:
        gathered = self.pending.get((session, of))
        if gathered is None:
            self.pending[(session, of)] = _Gathered((stream, seq, t_capture))
        else:
            gathered.more.append((stream, seq))
        self.count += 1
        if (of == "eos" or self.count >= ACK_GATHER_MAX
                or time.monotonic() - self.sent_at >= self.gather_seconds):
            self.flush()

    def flush(self) -> None:
        """Send everything gathered: a session's predictions before its eos (dicts keep arrival order, and an
        eos's acknowledgement is sent as soon as it comes, so no predictions of its session wait behind it)."""
        self.sent_at = time.monotonic()
        pending, self.pending, self.count = self.pending, {}, 0
        for (session, of), gathered in pending.items():
            stream, seq, t_capture = gathered.first
            send_ack(self.service, self.sock, session, stream, seq, t_capture, of, gathered.more)
