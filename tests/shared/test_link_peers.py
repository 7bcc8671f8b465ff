"""The peer counter of a PUSH link sleeps until ZeroMQ has an event for it (issue 26): it woke
ten times a second in every process to look for a stop, a tenth of a paced capture's CPU. Its
thread ends when the counter is closed, or when its socket is."""

from __future__ import annotations

import threading
import time
import uuid

from shared.bus.bus import Receiver, Sender
from shared.bus.messages import make_header
from shared.ops.ports import free_ports


def _voluntary_switches(native_id: int) -> int:
    with open(f"/proc/self/task/{native_id}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches line")


def _wait(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def _sender(link: str) -> Sender:
    port = free_ports(1)[0]
    return Sender(f"peers-{uuid.uuid4().hex[:6]}", f"push+bind:tcp://127.0.0.1:{port}", threading.Event(),
                  link=link)


def test_an_idle_peer_counter_does_not_wake_and_still_counts():
    sender = _sender("frames")
    consumer = Receiver("test", f"pull+connect:{sender.spec.endpoint}")
    try:
        counter = sender.peers
        assert counter is not None
        assert _wait(lambda: counter.peers == 1)
        thread = counter._thread
        assert thread.native_id is not None
        before = _voluntary_switches(thread.native_id)
        time.sleep(1.0)  # nothing happens on the link meanwhile
        woke = _voluntary_switches(thread.native_id) - before
        assert woke <= 1, f"the counter's thread woke {woke} times in an idle second (it polled every 100 ms)"
        consumer.close()
        assert _wait(lambda: counter.peers == 0)  # an event still wakes it
    finally:
        sender.close()


def test_closing_the_counter_ends_its_thread_at_once():
    sender = _sender("faces")
    counter = sender.peers
    assert counter is not None
    sender.close()  # closes the counter, then the socket
    assert not counter._thread.is_alive()


def test_a_socket_closed_under_its_counter_ends_the_thread():
    # A socket closed without the counter's close (a crash path): ZeroMQ's MONITOR_STOPPED ends it.
    sender = _sender("batches")
    counter = sender.peers
    assert counter is not None
    sender.socket.close()
    counter._thread.join(5)
    assert not counter._thread.is_alive()
    counter.close()  # afterwards, harmless


def test_a_link_zeromq_gave_up_on_is_connected_again(tmp_path, caplog):
    """libzmq ends a connecting endpoint's session for good after a protocol error in its handshake
    (here: the producer's authentication refuses the key, as a ZAP handler that is not ready or not
    yet trusting it does): waiting does not bring the link back, `Receiver.heal` does. The real
    CURVE handshake and ZAP handler, over TCP."""
    import zmq

    from shared.bus import bus
    from shared.bus.bus import make_curve_keys, stop_authenticator

    secret = make_curve_keys(str(tmp_path / "keys"))
    nobody = tmp_path / "nobody"  # a folder of trusted keys without ours
    nobody.mkdir()
    port = free_ports(1)[0]
    sender = Sender("producer", f"push+bind:tcp://127.0.0.1:{port}", threading.Event(), curve_key_file=str(secret),
                    link="frames")
    receiver = None
    try:
        assert bus._authenticator is not None
        bus._authenticator.configure_curve(domain="*", location=str(nobody))
        receiver = Receiver("consumer", f"pull+connect:tcp://127.0.0.1:{port}", curve_key_file=str(secret),
                            link="frames")
        with caplog.at_level("WARNING", logger="shared.bus.link_peers"):
            assert _wait(lambda: "refused by the peer's authentication" in caplog.text), caplog.text
        bus._authenticator.configure_curve(domain="*", location=str(secret.parent))  # trusted now
        time.sleep(1.5)  # ZeroMQ would have retried 15 times by now (RECONNECT_IVL 100 ms): it does not
        assert not sender.socket.poll(0, zmq.POLLOUT) and receiver.watch.peers == 0
        assert not receiver.heal(after=60.0)  # not alone long enough yet
        assert receiver.heal(after=1.0)
        assert _wait(lambda: sender.socket.poll(0, zmq.POLLOUT))
        sender.send(make_header("eos", "s", "cam0", 1, time.time(), reason="end_of_file"))
        assert receiver.socket.poll(5000) and receiver.read().kind == "eos"
        assert receiver.watch.peers == 1 and receiver.watch.alone_for() == 0.0
    finally:
        if receiver is not None:
            receiver.close()
        sender.close()
        stop_authenticator()


def test_a_link_whose_producer_is_away_is_left_to_zeromq():
    """A producer not up yet (or restarting): ZeroMQ keeps trying, and the watch sees its attempts,
    so the link is not connected again on top of them (nor said every few seconds)."""
    port = free_ports(1)[0]  # nobody listens there
    receiver = Receiver("consumer", f"pull+connect:tcp://127.0.0.1:{port}", link="frames")
    try:
        time.sleep(2.0)
        assert receiver.watch.peers == 0 and receiver.watch.alone_for() >= 1.9
        assert receiver.watch.given_up_for() < 1.0  # its retries, every 0.1-0.2 s
        assert not receiver.heal(after=1.0)
    finally:
        receiver.close()


def test_a_consumer_reading_every_capture_of_a_class_is_not_warned_of_its_peers(caplog):
    """facedetect connects one socket to every capture of a class: a peer an endpoint is what it should
    have (a 40-camera class logged 39 warnings telling the user to authenticate the bus). A second
    consumer on a link that one process binds is still warned of."""
    senders = [_sender("frames") for _ in range(3)]
    endpoints = ",".join(s.spec.endpoints[0] for s in senders)
    reader = Receiver("facedetect", f"pull+connect:{endpoints}", link="frames")
    stray = None
    try:
        with caplog.at_level("WARNING", logger="shared.bus.link_peers"):
            assert _wait(lambda: reader.watch.peers == 3), reader.watch.peers
            assert _wait(lambda: all(s.peers.peers == 1 for s in senders))
            assert "takes a share" not in caplog.text
            stray = Receiver("stray", f"pull+connect:{senders[0].spec.endpoints[0]}", link="frames")
            assert _wait(lambda: "link frames has 2 peers" in caplog.text), caplog.text
    finally:
        for one in [reader, stray, *senders]:
            if one is not None:
                one.close()


def test_both_ends_count_a_handshake_made_at_once():
    """A local handshake can end within microseconds of the connect or bind: each end's counter is
    attached before, so it sees it. Attached after, some of these 30 links read as peerless (the
    consumer's heal then connected a working link again 5 s later)."""
    missed = []
    for i in range(30):
        sender = _sender("frames")  # bound first: the consumer's handshake comes right at its connect
        reader = Receiver("consumer", f"pull+connect:{sender.spec.endpoints[0]}", link="frames")
        try:
            seen_by_reader = _wait(lambda r=reader: r.watch.peers == 1, 2.0)
            if not (seen_by_reader and _wait(lambda s=sender: s.peers.peers == 1, 2.0)):
                missed.append((i, reader.watch.peers, sender.peers.peers))
        finally:
            reader.close()
            sender.close()
    assert missed == []
