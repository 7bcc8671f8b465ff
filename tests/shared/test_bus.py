"""Real ZeroMQ sockets: drops are counted at a full queue, control messages still arrive."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import zmq

from shared.bus import metrics
from shared.bus.bus import Receiver, Sender, SocketSpec, make_curve_keys
from shared.bus.messages import make_header
from shared.data.running_totals import no_totals
from shared.ops.ports import free_ports


def _update(seq: int) -> dict:
    """A droppable data message (not a control message)."""
    return make_header("update", "s", "c", seq, 0.0, totals=no_totals(), predictions=[])


def _value(counter, *labels) -> float:
    return counter.labels(*labels)._value.get()


def test_socket_spec_parsing():
    assert SocketSpec.parse("push+bind:tcp://127.0.0.1:5") == SocketSpec("push", True, "tcp://127.0.0.1:5")
    several = SocketSpec.parse("pull+connect:tcp://a:5551,ipc:///tmp/b")
    assert several.endpoints == ["tcp://a:5551", "ipc:///tmp/b"] and not several.bind
    for bad in ("push:tcp://x:1", "bogus+bind:tcp://x:1", "push+maybe:tcp://x:1", "push+bind:nowhere",
                "pull+connect:tcp://a:1,nowhere"):
        with pytest.raises(ValueError):
            SocketSpec.parse(bad)


def test_one_consumer_reads_several_producers_each_bound_on_its_own_port():
    """One capture per camera: each binds its frames link, facedetect connects to every one."""
    ports = free_ports(2)
    stop = threading.Event()
    senders = [Sender("bustest-many", f"push+bind:tcp://127.0.0.1:{port}", stop) for port in ports]
    receiver = Receiver("bustest-many", "pull+connect:" + ",".join(f"tcp://127.0.0.1:{p}" for p in ports))
    try:
        for stream, sender in zip(("front", "back"), senders, strict=True):
            for seq in range(3):
                sender.send(make_header("update", "s", stream, seq, 0.0, totals=no_totals(), predictions=[]))
            sender.send(make_header("eos", "s", stream, 3, 0.0, reason="end_of_file"))
        got: dict[str, list[str]] = {"front": [], "back": []}
        while sum(map(len, got.values())) < 8 and receiver.socket.poll(3000):
            msg = receiver.read()
            got[msg.header.stream].append(msg.kind)
        assert got == {stream: ["update"] * 3 + ["eos"] for stream in ("front", "back")}
    finally:
        for sock in (*senders, receiver):
            sock.close()


def test_full_queue_drops_frames_counts_them_and_eos_still_arrives():
    port = free_ports(1)[0]
    stop = threading.Event()
    service = "bustest"
    sender = Sender(service, f"push+bind:tcp://127.0.0.1:{port}", stop, hwm=2)
    receiver = Receiver(service, f"pull+connect:tcp://127.0.0.1:{port}", hwm=2)
    try:
        before = _value(metrics.FRAMES_DROPPED, service, "queue_full")
        sent = 0
        for seq in range(200):  # nobody reads: the queues (both sides' HWM) fill up
            sent += sender.send(_update(seq), droppable=True)
        dropped = _value(metrics.FRAMES_DROPPED, service, "queue_full") - before
        assert dropped > 0 and sent + dropped == 200
        # Drain, then an end-of-stream must get through even though it was sent "droppable".
        received = 0
        while receiver.socket.poll(200):
            received += receiver.read() is not None
        assert received == sent
        assert sender.send(make_header("eos", "s", "c", 999, 0.0, reason="end_of_file"), droppable=True)
        assert receiver.socket.poll(2000)
        assert receiver.read().kind == "eos"
    finally:
        sender.close()
        receiver.close()


def test_garbage_is_counted_and_the_next_good_message_is_read():
    port = free_ports(1)[0]
    service = "bustest2"
    raw = zmq.Context.instance().socket(zmq.PUSH)
    raw.bind(f"tcp://127.0.0.1:{port}")
    receiver = Receiver(service, f"pull+connect:tcp://127.0.0.1:{port}")
    try:
        before = _value(metrics.MESSAGES_REJECTED, service, "bad_msgpack")
        raw.send_multipart([b"frame", b"\xc1\xc1", b""])
        from shared.bus.messages import encode
        raw.send_multipart(encode(make_header("eos", "s", "c", 1, 0.0, reason="end_of_file")))
        assert receiver.socket.poll(2000)
        assert receiver.read() is None
        assert _value(metrics.MESSAGES_REJECTED, service, "bad_msgpack") == before + 1
        assert receiver.socket.poll(2000)
        assert receiver.read().kind == "eos"
    finally:
        raw.close(0)
        receiver.close()


def test_curve_peers_with_the_key_talk_and_a_stranger_gets_nothing(tmp_path):
    from shared.bus.bus import make_curve_keys

    secret = str(make_curve_keys(str(tmp_path / "keys")))
    port = free_ports(1)[0]
    stop = threading.Event()
    sender = Sender("curvetest", f"push+bind:tcp://127.0.0.1:{port}", stop, curve_key_file=secret)
    stranger = Receiver("curvetest", f"pull+connect:tcp://127.0.0.1:{port}")  # no keys at all
    try:
        for seq in range(3):
            sender.send(_update(seq), droppable=True)
        assert not stranger.socket.poll(1000), "an unauthenticated peer received a message"
    finally:
        stranger.close()
    friend = Receiver("curvetest", f"pull+connect:tcp://127.0.0.1:{port}", curve_key_file=secret)
    try:
        sender.send(make_header("eos", "s", "c", 9, 0.0, reason="end_of_file"))
        got = []
        while friend.socket.poll(2000):
            got.append(friend.read().header.seq)
            if 9 in got:
                break
        assert 9 in got
    finally:
        sender.close()
        friend.close()


def _peers(service: str, link: str) -> float:
    from shared.bus.link_peers import LINK_PEERS

    return LINK_PEERS.labels(service, link)._value.get()


def _wait_peers(service: str, link: str, want: float, timeout: float = 5.0) -> float:
    deadline = time.monotonic() + timeout
    while _peers(service, link) != want and time.monotonic() < deadline:
        time.sleep(0.02)
    return _peers(service, link)


def test_a_second_peer_on_a_push_link_is_counted_and_one_that_fails_curve_is_not(tmp_path):
    # Plain TCP: a stray PULL connects, is counted (2), and takes a share of the messages.
    port = free_ports(1)[0]
    stop = threading.Event()
    service = f"peers-{uuid.uuid4().hex[:6]}"
    sender = Sender(service, f"push+bind:tcp://127.0.0.1:{port}", stop, link="frames")
    consumer = Receiver(service, f"pull+connect:tcp://127.0.0.1:{port}")
    stray = Receiver(service, f"pull+connect:tcp://127.0.0.1:{port}")
    try:
        assert _wait_peers(service, "frames", 2) == 2
        for seq in range(10):
            sender.send(_update(seq))
        assert stray.socket.poll(2000), "the stray got nothing: the count of 2 would be wrong"
        stray.close()
        assert _wait_peers(service, "frames", 1) == 1
    finally:
        sender.close()
        consumer.close()
    # CURVE: the stray's connection fails its handshake and never counts.
    secret = str(make_curve_keys(str(tmp_path / "keys")))
    port = free_ports(1)[0]
    sender = Sender(service, f"push+bind:tcp://127.0.0.1:{port}", stop, curve_key_file=secret, link="faces")
    friend = Receiver(service, f"pull+connect:tcp://127.0.0.1:{port}", curve_key_file=secret)
    stray = Receiver(service, f"pull+connect:tcp://127.0.0.1:{port}")
    try:
        assert _wait_peers(service, "faces", 1) == 1
        time.sleep(0.5)  # the stray's attempts, had they counted, show by now
        assert _peers(service, "faces") == 1
        sender.send(_update(1))
        assert friend.socket.poll(2000) and not stray.socket.poll(200)
    finally:
        stray.close()
        friend.close()
        sender.close()


def test_a_process_that_bound_with_curve_exits_at_once_and_quietly(tmp_path):
    # Its ZAP authenticator held the context's term() for the whole 6 s bound at every exit (and
    # printed asyncio tracebacks): now the default in compose and `engagement run --transport tcp`.
    import subprocess
    import sys

    code = (f"import threading, time\nfrom shared.bus.bus import Sender, make_curve_keys\n"
            f"from shared.ops.service import _flush_context\n"
            f"key = str(make_curve_keys({str(tmp_path / 'keys')!r}))\n"
            f"s = Sender('t', 'push+bind:tcp://127.0.0.1:{free_ports(1)[0]}', threading.Event(), "
            f"curve_key_file=key, link='frames')\n"
            f"s.close()\nt = time.monotonic()\n_flush_context()\nprint(time.monotonic() - t)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert float(done.stdout) < 3.0  # the bound is 6 s: anything near it means term() waited for a socket
