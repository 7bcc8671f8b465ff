"""A consumer whose producer's name gets no DNS answer, in a network and mount namespace of its own.

Run by tests/shared/test_dial.py as `unshare --net --mount`: it brings the namespace's loopback up,
puts a resolv.conf naming 127.0.0.1 over /etc/resolv.conf (this namespace's view only), and answers
DNS itself on 127.0.0.1:53, holding every answer until told: the podman network's query that got
no answer as a container started, for real (glibc, libzmq and Python all ask this server).

It prints one JSON line: whether a second link (a numeric address) carried a message while the
name was unanswered, and, once the answer came, how many of the named producer's messages arrived
and the most peers the producer ever had.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import zmq

from shared.bus.bus import Receiver
from shared.bus.link_peers import PeerCounter
from shared.bus.messages import encode, make_header

HELD_NAME = "producer.stall.test"
MESSAGES = 20


class HoldingDns:
    """Answers A queries for HELD_NAME with 127.0.0.1 once `release` is set; until then, none."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 53))
        self.release = threading.Event()
        self.asked = threading.Event()
        self.held: list[tuple[bytes, tuple[str, int]]] = []
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self.closed.is_set():
            try:
                query, client = self.sock.recvfrom(512)
                self.held.append((query, client))
                self.asked.set()
            except TimeoutError:
                pass
            if self.release.is_set():
                while self.held:
                    query, client = self.held.pop(0)
                    self.sock.sendto(_answer(query), client)

    def close(self) -> None:
        self.closed.set()
        self.thread.join()
        self.sock.close()


def _answer(query: bytes) -> bytes:
    end = 12
    labels = []
    while query[end]:
        labels.append(query[end + 1:end + 1 + query[end]].decode())
        end += 1 + query[end]
    qtype = struct.unpack("!H", query[end + 1:end + 3])[0]
    question = query[12:end + 5]
    found = ".".join(labels).lower() == HELD_NAME
    answers = 1 if found and qtype == 1 else 0
    header = query[:2] + struct.pack("!HHHHH", 0x8180 if found else 0x8183, 1, answers, 0, 0)
    record = struct.pack("!HHHIH", 0xC00C, 1, 1, 0, 4) + socket.inet_aton("127.0.0.1") if answers else b""
    return header + question + record


def _frame(seq: int) -> list[Any]:
    """A one-pixel frame."""
    return list(encode(make_header("frame", "s", "a", seq, time.time(), width=1, height=1, encoding="bgr"), b"xyz"))


def _isolate() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    conf.write("nameserver 127.0.0.1\noptions timeout:30 attempts:1\n")
    conf.close()
    subprocess.run(["mount", "--bind", conf.name, "/etc/resolv.conf"], check=True)


def main() -> int:
    _isolate()
    dns = HoldingDns()
    # The producers have a context of their own (their own I/O thread), as another process would.
    own = zmq.Context()
    named, numeric = own.socket(zmq.PUSH), own.socket(zmq.PUSH)
    named_peers = PeerCounter(named, "producer", "frames", gauge=False)
    named.bind("tcp://127.0.0.1:5601")
    numeric.bind("tcp://127.0.0.1:5602")

    held = Receiver("consumer", f"pull+connect:tcp://{HELD_NAME}:5601", link="frames")
    other = Receiver("consumer", "pull+connect:tcp://127.0.0.1:5602", link="other")
    asked = dns.asked.wait(10)
    numeric.send_multipart(_frame(0))
    other_carried = bool(other.socket.poll(3000))
    if other_carried:
        other.read()

    # Ticks as a service makes them, for longer than the heal's bound, while the name stays unanswered.
    deadline = time.monotonic() + 7.0
    while time.monotonic() < deadline:
        held.heal()
        time.sleep(0.1)
    dns.release.set()
    most_peers = 0
    deadline = time.monotonic() + 20.0
    while named_peers.peers == 0 and time.monotonic() < deadline:
        held.heal()
        time.sleep(0.1)
    time.sleep(1.0)  # any second connection queued behind the lookup comes up meanwhile
    for seq in range(MESSAGES):
        held.heal()
        most_peers = max(most_peers, named_peers.peers)
        named.send_multipart(_frame(seq))
    received = 0
    while held.socket.poll(2000):
        held.heal()
        most_peers = max(most_peers, named_peers.peers)
        if held.read() is not None:
            received += 1
    print(json.dumps({"dns_asked": asked, "other_link_carried_while_held": other_carried,
                      "received": received, "sent": MESSAGES, "most_peers": most_peers}), flush=True)
    held.close()
    other.close()
    named_peers.close()
    named.close(0)
    numeric.close(0)
    dns.close()
    own.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
