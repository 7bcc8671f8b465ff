"""A connecting socket's endpoints, their host names looked up in Python, never in ZeroMQ's I/O thread.

libzmq looks a connect's host name up inside its one I/O thread (getaddrinfo). A DNS query that gets
no answer (on podman's network now and then, as a container starts; glibc waits 5 s a try) froze
every link of the process for as long, and the heal, reading the silence as a link ZeroMQ had given
up, queued connects behind the lookup that all came up together once it returned: two connections to
one producer, and the frames its PUSH had dealt to the one then closed were lost without a count
(compose check: a report of 119 of 120 frames). So a name is looked up here, on a thread of its own
and bounded by the resolver's own limits; the socket's owner connects ZeroMQ to the address on its
tick (`poll`). A link short of peers is looked up again now and then: a producer whose container was
made again can come back at another address.

Endpoints that name no host (ipc://, inproc://, a numeric address, a source-bound `tcp://a;b:p`) are
connected as they are, at once, as before.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

log = logging.getLogger(__name__)

FIRST_LOOKUP_SECONDS = 2.0  # a new socket waits this long for its names before going on (the rest on ticks)
LOOK_AGAIN_SECONDS = 5.0  # a link short of peers looks its names up again this often
# A name not found yet is asked again sooner: in compose a consumer starts before its producer, whose
# name resolves once its container is made (a "not found" comes back at once; one lookup at a time).
PENDING_LOOKUP_SECONDS = 0.5
# An endpoint's lookups waiting for an answer at once (each a thread): 8 s of them at PENDING_LOOKUP_SECONDS.
# In compose, 4 started in the 2 s a container's queries went unanswered all stuck, and held the link 30 s.
LOOKUPS_IN_FLIGHT = 16

Lookup = Callable[[str, int], str]


def lookup_ipv4(host: str, port: int) -> str:
    """The first IPv4 address of `host`, as ZeroMQ resolves it (IPv6 is off on our sockets)."""
    return str(socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])


def host_and_port(endpoint: str) -> tuple[str, int] | None:
    """(host name, port) of a tcp:// endpoint that names a host; None for anything ZeroMQ can take as is."""
    if not endpoint.startswith("tcp://") or ";" in endpoint:
        return None
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if not host or not port.isdigit() or host.startswith("["):
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        return host, int(port)


@dataclass
class _Target:
    """One endpoint: the address ZeroMQ is connected to (empty: none yet) and its lookups under way."""

    endpoint: str
    name: tuple[str, int] | None
    address: str = ""
    lookups: list[threading.Thread] = field(default_factory=list)
    started: int = 0  # lookups started
    answer: tuple[int, str, str] | None = None  # (number, address found, error) of the newest lookup that ended
    applied: int = 0  # the number of the last answer acted on (an older one ending later is ignored)
    looked_at: float = field(default=-LOOK_AGAIN_SECONDS)
    said: bool = False  # its failed lookup was said at info


class Dialer:
    """Connects `sock` to `endpoints` (all of a connecting link), names looked up off ZeroMQ's thread.

    Owned by the socket's thread: `poll` and `reconnect` touch the socket; lookups only set an answer."""

    def __init__(self, sock: zmq.Socket[bytes], endpoints: list[str], link: str,
                 lookup: Lookup | None = None, wait: float | None = None) -> None:
        self.sock, self.link, self._lookup = sock, link, lookup or lookup_ipv4
        self._answers = threading.Lock()
        self.targets = [_Target(endpoint, host_and_port(endpoint)) for endpoint in endpoints]
        self.connected_at = time.monotonic()  # the last connect made (the link's watch counts from it)
        for target in self.targets:
            if target.name is None:
                self._connect(target, target.endpoint)
            else:
                self._start_lookup(target)
        deadline = time.monotonic() + (FIRST_LOOKUP_SECONDS if wait is None else wait)
        for target in self.targets:
            for lookup_thread in target.lookups:
                lookup_thread.join(max(0.0, deadline - time.monotonic()))
        self.poll()

    @property
    def addresses(self) -> list[str]:
        """The addresses ZeroMQ is connected to (for logs)."""
        return [target.address for target in self.targets if target.address]

    def pending(self) -> list[str]:
        """Endpoints whose name has not been looked up yet: nothing is connected for them."""
        return [target.endpoint for target in self.targets if not target.address]

    def poll(self) -> bool:
        """Connect the endpoints whose newest lookup found a new address; True if any was connected."""
        connected = False
        for target in self.targets:
            target.lookups = [thread for thread in target.lookups if thread.is_alive()]
            with self._answers:
                answer, target.answer = target.answer, None
            # An older lookup ending after a newer one was acted on counts only if it found the name at last.
            if answer is None or (answer[0] <= target.applied and (answer[2] or target.address)):
                continue
            number, found, error = answer
            target.applied = max(target.applied, number)
            if error:
                # Said once while the endpoint has no address (a producer not started yet is common);
                # a producer already connected keeps its address (its container may be restarting).
                level = logging.DEBUG if target.address or target.said else logging.INFO
                target.said = True
                log.log(level, "link %s: cannot look up %s yet (%s): trying again", self.link,
                        target.endpoint, error)
                continue
            host = target.name[0] if target.name else ""
            address = target.endpoint.replace(f"//{host}:", f"//{found}:", 1)
            if address == target.address:
                continue
            if target.address:
                log.info("link %s: %s is now at %s (was %s): connecting to it", self.link,
                         target.endpoint, address, target.address)
                try:
                    self.sock.disconnect(target.address)
                except zmq.ZMQError:
                    pass  # ZeroMQ ended that endpoint's session already
            self._connect(target, address)
            connected = True
        return connected

    def tick(self, short_of_peers: bool) -> None:
        """The owner's tick: connect what the lookups found, and look the names up again while the
        link is short of peers (a producer started later, or made again at another address)."""
        self.poll()
        if short_of_peers:
            self.look_again()

    def look_again(self) -> None:
        """Look every name up again (at most every LOOK_AGAIN_SECONDS, PENDING_LOOKUP_SECONDS for one not
        found yet): the link is short of peers. A lookup still waiting for its answer does not hold the next:
        a DNS query that got no answer waits out the resolver's timeout (glibc: 5 s a try, a try for each
        search domain), while the next query is answered at once (compose: 50 s to link a started producer).
        Under podman a query can also go unanswered for 30-45 s: the bridge's MAC address changed as a
        container joined, and this container's ARP entry still holds the old one."""
        for target in self.targets:
            every = LOOK_AGAIN_SECONDS if target.address else PENDING_LOOKUP_SECONDS
            waiting = sum(thread.is_alive() for thread in target.lookups)
            if target.name is not None and waiting < LOOKUPS_IN_FLIGHT \
                    and time.monotonic() - target.looked_at >= every:
                self._start_lookup(target)

    def reconnect(self) -> list[str]:
        """Connect every connected endpoint again (ZeroMQ gave it up); returns the addresses."""
        for target in self.targets:
            if target.address:
                try:
                    self.sock.disconnect(target.address)
                except zmq.ZMQError:
                    pass  # the endpoint's session is gone already (given up)
                self._connect(target, target.address)
        return self.addresses

    def _connect(self, target: _Target, address: str) -> None:
        self.sock.connect(address)
        target.address = address
        self.connected_at = time.monotonic()

    def _start_lookup(self, target: _Target) -> None:
        assert target.name is not None
        host, port = target.name
        target.started += 1
        number = target.started

        def look() -> None:
            try:
                found, error = self._lookup(host, port), ""
            except (OSError, IndexError, UnicodeError) as exc:
                found, error = "", str(exc) or type(exc).__name__
            with self._answers:  # the newest lookup's answer stands, whichever ends first; a find beats a failure
                held = target.answer
                if held is None or (number > held[0] and (found or not held[1])) or (found and not held[1]):
                    target.answer = (number, found, error)

        target.looked_at = time.monotonic()
        thread = threading.Thread(target=look, name=f"lookup-{host}", daemon=True)
        target.lookups.append(thread)
        thread.start()
