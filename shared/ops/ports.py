"""Free TCP ports on loopback, so several local runs (and tests) never collide.

A port is chosen now and bound later by a child process. A port the kernel hands out for
`bind(0)` lies in its ephemeral range, the same range it takes the source port of every outgoing
connection from (a Redis client, a scrape, a ZeroMQ tcp connect): with dozens of processes
connecting on one box, one of them took a planned metrics port before its service bound it
(`cannot serve metrics ... Address already in use`, a stream lost at start). So ports are drawn
from outside that range, each checked by binding it, and the kernel's choice is the fallback.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10000  # below: well-known and registered services' ports
HIGHEST_PORT = 65535
TRIES_A_PORT = 50


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int] | None:
    """The kernel's range of source ports for outgoing connections (None where it does not say)."""
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def quiet_ports(ephemeral: tuple[int, int] | None) -> list[range]:
    """Port ranges no outgoing connection takes: above LOWEST_PORT and outside the ephemeral range."""
    if ephemeral is None:
        return []
    low, high = ephemeral
    spans = [range(LOWEST_PORT, min(low, HIGHEST_PORT + 1)), range(max(high + 1, LOWEST_PORT), HIGHEST_PORT + 1)]
    return [span for span in spans if len(span) > 0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports outside the ephemeral range (held open together so they differ)."""
    socks: list[socket.socket] = []
    try:
        spans = quiet_ports(ephemeral_range())
        while len(socks) < count:
            socks.append(_bind_one(host, spans))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _bind_one(host: str, spans: list[range]) -> socket.socket:
    s = socket.socket()
    try:
        if spans:
            weights = [len(span) for span in spans]
            for _ in range(TRIES_A_PORT):
                port = random.choice(random.choices(spans, weights)[0])
                try:
                    s.bind((host, port))
                    return s
                except OSError:
                    continue
        s.bind((host, 0))  # no quiet range, or it is full: the kernel's choice
        return s
    except BaseException:
        s.close()
        raise
