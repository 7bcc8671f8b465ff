"""The topology of the bus, written once: every link, who sends on it, who reads it, and why.

The link settings (shared/ops/config.py: FRAMES_OUT, FRAMES_IN, ...), the launcher's wiring
(services/launcher), the compose check (tests/deploy) and the architecture page
(ARCHITECTURE.md, checked by tests/test_links.py) are all derived from `LINKS`.

A link's two settings are connection strings `<socket type>+<bind|connect>:<endpoint>`: the
producer binds, the consumer connects. PUSH/PULL gives backpressure (a file source waits for
the pipeline; a live one drops and counts what the pipeline cannot take); PUB/SUB lets a slow
reader miss frames instead of slowing anyone down.

Several producers on one link (a class with several cameras: one capture each): each producer
binds its own endpoint and the consumer connects to all of them, comma-separated
(`pull+connect:tcp://capture-front:5551,tcp://capture-back:5551`, shared/bus/bus.py); ZeroMQ
queues fairly between them, and backpressure still holds per producer. Where the subscriber of
a PUB/SUB link binds (the launcher), the publishers all connect to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Pattern = Literal["push/pull", "pub/sub"]
SOCKET_TYPES = ("push", "pull", "pub", "sub", "dealer", "router")
SPEC_FORM = "<type>+<bind|connect>:<endpoint>"


def spec_problem(text: str) -> str | None:
    """What is wrong with a connection string, or None when it has the form `<type>+<bind|connect>:<endpoint>`
    (several endpoints comma-separated, each `scheme://...`). Checked when settings are read, so a wrong
    FRAMES_OUT is one line at start, not a traceback from the socket it would have made."""
    head, colon, endpoint = text.partition(":")
    sock_type, plus, how = head.partition("+")
    if not colon or not plus or sock_type not in SOCKET_TYPES or how not in ("bind", "connect"):
        return f"is not {SPEC_FORM} (type one of {', '.join(SOCKET_TYPES)})"
    if not all("://" in one for one in endpoint.split(",")):
        return "has an endpoint without a scheme (tcp://host:port, ipc:///path)"
    return None


@dataclass(frozen=True)
class Link:
    name: str
    producer: str
    consumer: str
    pattern: Pattern
    port: int  # default TCP port (loopback alone; the producer's host in compose)
    carries: tuple[str, ...]  # message kinds (shared/bus/messages.py)
    why: str  # why this pattern, and what the link is for
    wired_by_default: bool = True  # False: its settings default to empty (the link is off)
    queue: int = 0  # messages each side may hold when more than the common HWM (shared/ops/service.py)

    @property
    def out_setting(self) -> str:
        return f"{self.name.upper()}_OUT"

    @property
    def in_setting(self) -> str:
        return f"{self.name.upper()}_IN"

    @property
    def socket_types(self) -> tuple[str, str]:
        """(producer's, consumer's) ZeroMQ socket type."""
        first, second = self.pattern.split("/")
        return first, second

    def out_spec(self, host: str = "127.0.0.1", port: int | None = None, endpoint: str = "") -> str:
        """The producer's connection string: it binds on `host` (or on `endpoint`, e.g. ipc://...)."""
        return f"{self.socket_types[0]}+bind:{endpoint or self._tcp(host, port)}"

    def in_spec(self, host: str = "127.0.0.1", port: int | None = None, endpoint: str = "") -> str:
        """The consumer's connection string: it connects to the producer at `host` (or `endpoint`)."""
        return f"{self.socket_types[1]}+connect:{endpoint or self._tcp(host, port)}"

    def in_spec_from(self, hosts: list[str], port: int | None = None) -> str:
        """The consumer's connection string when several producers (`hosts`) each bind the link."""
        return f"{self.socket_types[1]}+connect:" + ",".join(self._tcp(host, port) for host in hosts)

    def _tcp(self, host: str, port: int | None) -> str:
        return f"tcp://{host}:{self.port if port is None else port}"

    def local_specs(self, port: int, endpoint: str = "") -> tuple[str, str]:
        """(producer's, consumer's) connection strings on one host (the launcher).

        There a PUB/SUB link binds on the subscriber and the publisher connects: the publisher's
        first frames leave after its connection is made, while a SUB connecting to a PUB bound a
        moment before misses them (ZeroMQ's slow joiner: a recording lost its first 2 of 6 frames).
        """
        out, inn = self.out_spec(port=port, endpoint=endpoint), self.in_spec(port=port, endpoint=endpoint)
        if self.pattern == "pub/sub":
            out, inn = out.replace("+bind:", "+connect:"), inn.replace("+connect:", "+bind:")
        return out, inn

    def local_specs_many(self, endpoints: list[str]) -> tuple[list[str], str]:
        """(each producer's, the consumer's) connection strings on one host for several producers.

        `endpoints` holds one free endpoint per producer (tcp://127.0.0.1:PORT or ipc://...): each
        binds its own and the consumer connects to all. A PUB/SUB link binds the first on the
        subscriber (see local_specs) and every publisher connects to it.
        """
        if self.pattern == "pub/sub":
            out, inn = self.local_specs(0, endpoints[0])
            return [out] * len(endpoints), inn
        outs = [f"{self.socket_types[0]}+bind:{endpoint}" for endpoint in endpoints]
        return outs, f"{self.socket_types[1]}+connect:" + ",".join(endpoints)


LINKS: tuple[Link, ...] = (
    Link("frames", "capture", "facedetect", "push/pull", 5551, ("frame", "eos"),
         "backpressure: a file source waits for the pipeline; a live source drops (and counts) "
         "the frames the pipeline cannot take"),
    Link("preview", "capture", "reporter", "pub/sub", 5552, ("frame",),
         "overlay and recording only: a slow reader just misses frames, which decode alone"),
    Link("faces", "facedetect", "sequencer", "push/pull", 5553, ("faces", "eos"),
         "every face with its crop; never dropped after detection"),
    Link("batches", "sequencer", "inference", "push/pull", 5554, ("batch", "eos"),
         "the students whose sequence of crops is due in this frame"),
    Link("predictions", "inference", "aggregator", "push/pull", 5555, ("predictions", "eos"),
         "each student's level and probabilities: the product's data",
         # The aggregator lets them gather 50 ms between runs (GATHER_SECONDS): 10 of 200 a second, more than
         # the common HWM holds, and inference, a stage a frame's delay runs through, must not wait on its send.
         queue=64),
    Link("updates", "aggregator", "reporter", "push/pull", 5556, ("update", "eos"),
         "the frame's predictions with the session's running totals, and the end of the session",
         # Small messages at every stream's rate together (160 a second from 80 webcams): the common HWM held
         # 50 ms of them, and a busy box that kept either side off the CPU that long lost overlay updates (and
         # the page's alerts their predictions). A few seconds of a full box's, a few MB.
         queue=512),
    Link("acks", "aggregator", "inference", "push/pull", 5557, ("ack",),
         "a predictions/eos message is written to Redis: inference resends what stays "
         "unacknowledged (shared/bus/acks.py); the launcher and compose wire it",
         wired_by_default=False),
    Link("live", "reporter", "web", "pub/sub", 5558, ("frame", "update", "eos"),
         "the drawn overlay as JPEG, every update and the report's end, for the web page: a slow "
         "or absent web loses messages, the reporter never waits; the launcher and compose wire it",
         wired_by_default=False),
)

BY_NAME: dict[str, Link] = {link.name: link for link in LINKS}


# --- one service's side of the table (shared/ops/service.py gives each service these) -------

def inputs_of(service: str) -> dict[str, str]:
    """The links `service` reads: link name -> its settings attribute (e.g. "frames_in")."""
    return {link.name: link.in_setting.lower() for link in LINKS if link.consumer == service}


def outputs_of(service: str) -> dict[str, str]:
    """The links `service` sends on: link name -> its settings attribute (e.g. "faces_out")."""
    return {link.name: link.out_setting.lower() for link in LINKS if link.producer == service}


def expected_by(service: str) -> dict[str, tuple[str, ...]]:
    """The message kinds `service` accepts on each link it reads: what the link carries, no more."""
    return {link.name: link.carries for link in LINKS if link.consumer == service}
