"""Planned ports come from outside the kernel's ephemeral range: outgoing connections never take them."""

from __future__ import annotations

import socket

from shared.ops import ports


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range():
    ephemeral = ports.ephemeral_range()
    assert ephemeral is not None, "Linux says its ephemeral range in /proc"
    got = ports.free_ports(40)
    assert len(set(got)) == 40
    low, high = ephemeral
    assert not [p for p in got if low <= p <= high], "a planned port an outgoing connection may take"
    assert all(p >= ports.LOWEST_PORT for p in got)
    for p in got[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # free when handed out


def test_a_port_that_is_taken_is_never_handed_out(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        # Only the taken port and one other are outside the range: the other must come back.
        monkeypatch.setattr(ports, "quiet_ports", lambda _: [range(port, port + 1)])
        got = ports.free_ports(3)
    assert port not in got and len(set(got)) == 3  # the kernel's choice when the quiet range is full


def test_the_quiet_ranges_are_what_the_ephemeral_range_leaves(tmp_path):
    proc = tmp_path / "ip_local_port_range"
    proc.write_text("32768\t60999\n")
    assert ports.quiet_ports(ports.ephemeral_range(proc)) == [range(10000, 32768), range(61000, 65536)]
    proc.write_text("1024 65535\n")  # the whole range ephemeral: nothing quiet, the kernel chooses
    assert ports.quiet_ports(ports.ephemeral_range(proc)) == []
    assert ports.ephemeral_range(tmp_path / "missing") is None and ports.quiet_ports(None) == []
