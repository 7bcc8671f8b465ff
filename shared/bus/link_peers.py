"""Peers connected to a PUSH link this process binds, from ZeroMQ's socket monitor events.

A PUSH socket deals its messages round-robin to every connected peer: a second PULL that
connects (a stray process, a test tool, a service started twice) silently takes a share of the
frames. Each of our PUSH links has exactly one consumer, so more than one peer is a fault:
`engagement_link_peers{service,link}` shows it (alert LinkHasStrayPeer), and a warning says so.

Counted are peers whose ZMTP handshake succeeded: with CURVE on, a stranger's connection is
accepted by TCP, fails its handshake and is dropped without ever counting. Every accepted
connection ends its handshake with one event, SUCCEEDED or FAILED_* (a peer that hangs up
mid-handshake is FAILED_NO_DETAIL), and ZeroMQ's I/O thread emits a failed connection's
DISCONNECTED right after its FAILED: so the next DISCONNECTED after a FAILED is that
connection's (it never counted), any other is a counted peer's.

A link this process connects is watched the same way (no gauge): its failed handshakes are said
(a key the producer does not trust, a protocol error), and `given_up_for` says how long it has been
without a peer while ZeroMQ made no attempt to connect it. ZeroMQ retries a lost connection and a
producer that is away, but not after a protocol error during a handshake (libzmq ends that
endpoint's session for good): a consumer's link could stay dead for the rest of the class while
both processes ran (compose check, under load: inference connected to nothing, the pipeline
froze). `Receiver.heal` connects it again.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Mapping
from typing import Any

import zmq
from prometheus_client import Gauge

LINK_PEERS = Gauge("engagement_link_peers", "Peers connected to a PUSH link this service binds (one is right: "
                   "more means another process takes a share of its messages)", ["service", "link"])
_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
           zmq.EVENT_HANDSHAKE_FAILED_AUTH)
# MONITOR_STOPPED ends the thread: ZeroMQ sends it when the monitor is disabled or the socket closes,
# so the thread sleeps until an event instead of waking to look for a stop (ten times a second in every
# process with a link: a tenth of a paced capture's CPU).
_EVENTS = zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_MONITOR_STOPPED
for _event in _FAILED:
    _EVENTS |= _event
# A connecting socket's attempts: while ZeroMQ makes them, it has not given the endpoint up.
_TRYING = (zmq.EVENT_CONNECTED, zmq.EVENT_CONNECT_DELAYED, zmq.EVENT_CONNECT_RETRIED)
_CONNECTING_EVENTS = _EVENTS | zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_DELAYED | zmq.EVENT_CONNECT_RETRIED

log = logging.getLogger(__name__)


def next_event(events: zmq.Socket[bytes]) -> tuple[int, int, str]:
    """The next event on a monitor socket (blocks until there is one): the event, its value (an
    errno, a protocol error code or a ZAP status) and the endpoint, as pyzmq's recv_monitor_message
    reads them. Read here because zmq.utils.monitor imports asyncio: 1.5 MB and 17 ms more in every
    process with a link."""
    first, endpoint = events.recv_multipart()
    event, value = struct.unpack("=hi", first)
    return int(event), int(value), endpoint.decode(errors="replace")


# What a failed handshake's value means, for the log line.
_FAILURE_WORDS = {zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the peer hung up or timed out (errno {})",
                  zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol error {:#x}",
                  zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused by the peer's authentication (ZAP status {})"}
FAILURE_LOG_SECONDS = 60.0  # a peer that keeps failing is said once a minute
HANDSHAKE_SECONDS = 30.0  # ZeroMQ's ZMQ_HANDSHAKE_IVL default: it drops a handshake longer than this


class PeerCounter:
    """Counts `sock`'s handshaked peers on a thread of its own; `close` before closing `sock`.
    `gauge`: export the count (engagement_link_peers: the PUSH links a service binds). `expected`:
    the peers the link should have (a bound PUSH link one consumer; a connecting socket one per
    endpoint, as facedetect reading every capture of a class): more is warned of."""

    def __init__(self, sock: zmq.Socket[bytes], service: str, link: str, gauge: bool = True,
                 expected: int = 1) -> None:
        self.service, self.link, self.expected = service, link, expected
        self.gauge = LINK_PEERS.labels(service, link) if gauge else None
        if self.gauge is not None:
            self.gauge.set(0)
        self.peers = 0
        self.handshakes = 0  # peers that ever connected: a rise is a (re)connection (shared/bus/acks.py)
        self.failures = 0  # failed handshakes
        self.handshaking = 0  # connections made whose handshake has not ended (a connecting socket's)
        self.trying_at = time.monotonic()  # the last connection attempt ZeroMQ made (a connecting socket's)
        self.alone_since = time.monotonic()  # when the count last fell to 0 (or the watch began)
        self._failure_said = -FAILURE_LOG_SECONDS
        self._sock = sock
        self._closing = False
        self._failed_open = 0  # failed handshakes whose DISCONNECTED has not come yet
        # A connecting socket's attempts are watched too (a give-up is when they stop): a wake-up each
        # retry (RECONNECT_IVL, 0.1-0.2 s), only while its producer is away.
        self._events = sock.get_monitor_socket(_EVENTS if gauge else _CONNECTING_EVENTS)  # the thread's from here on
        self._thread = threading.Thread(target=self._run, name=f"peers-{link}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                event, value, endpoint = next_event(self._events)  # blocks until an event: no polling
                if event == zmq.EVENT_MONITOR_STOPPED:
                    return
                self.on_event({"event": event, "value": value, "endpoint": endpoint})
        except zmq.ZMQError as exc:
            # Someone else took the socket's one monitor (pyzmq hands the same pair socket out again)
            # and closed it: the count stops here, said once, and the service goes on. At a close it
            # is the end, not news.
            if not self._closing:
                log.warning("link %s: its peers are no longer counted (%s)", self.link, exc)
        finally:
            self._events.close(0)

    def alone_for(self) -> float:
        """Seconds this link has been without a handshaked peer (0 while it has one)."""
        return 0.0 if self.peers else time.monotonic() - self.alone_since

    def given_up_for(self) -> float:
        """Seconds a connecting link has been without a peer and without ZeroMQ trying to connect it
        (0 while it has one): how long ZeroMQ has given it up. A handshake under way first gets
        ZeroMQ's own bound (HANDSHAKE_IVL), after which ZeroMQ drops it and tries again."""
        if self.peers:
            return 0.0
        quiet = time.monotonic() - max(self.alone_since, self.trying_at)
        return max(0.0, quiet - HANDSHAKE_SECONDS) if self.handshaking else quiet

    def on_event(self, event: Mapping[str, Any]) -> None:
        kind, peers = event["event"], self.peers
        if kind in _TRYING:
            self.trying_at = time.monotonic()
            self.handshaking += kind == zmq.EVENT_CONNECTED
            return
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED or kind in _FAILED:
            self.handshaking = max(0, self.handshaking - 1)
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            peers += 1
            self.handshakes += 1
        elif kind in _FAILED:
            self._failed_open += 1
            self.failures += 1
            if time.monotonic() - self._failure_said >= FAILURE_LOG_SECONDS:
                self._failure_said = time.monotonic()
                # A peer that hangs up mid-handshake is common (a restart, a reconnect); a refusal is not.
                log.log(logging.INFO if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL else logging.WARNING,
                        "link %s: a handshake with %s failed: %s", self.link, event.get("endpoint") or "a peer",
                        _FAILURE_WORDS[kind].format(event.get("value", 0)))
        elif kind == zmq.EVENT_DISCONNECTED:
            if self._failed_open:
                self._failed_open -= 1
            else:
                peers = max(0, peers - 1)
        if peers > self.expected and peers > self.peers:
            log.warning("link %s has %d peers: another process connected to it takes a share of its messages "
                        "(authenticate the bus: CURVE_SERVER_KEY, or BUS_AUTH=curve for `engagement run`)",
                        self.link, peers)
        if peers == 0 and self.peers:
            self.alone_since = time.monotonic()
        self.peers = peers
        if self.gauge is not None:
            self.gauge.set(peers)

    def close(self) -> None:
        self._closing = True
        try:
            self._sock.disable_monitor()  # its MONITOR_STOPPED ends the thread
        except zmq.ZMQError:
            pass  # the socket is already closed: closing sent the MONITOR_STOPPED
        self._thread.join(2)
