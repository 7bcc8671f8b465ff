"""The unacknowledged-window's rules (shared/bus/acks.py); the live proof is tests/reliability/test_kill.py."""

from __future__ import annotations

from shared.bus.acks import UnackedWindow, key_of
from shared.bus.messages import Header, make_header


def _h(seq: int, kind: str = "predictions", session: str = "s") -> Header:
    fields = {"reason": "end_of_file"} if kind == "eos" else {"model": {}, "predictions": []}
    return make_header(kind, session, "cam0", seq, 0.0, **fields)


def test_acked_messages_are_forgotten_late_ones_resent_with_backoff():
    w = UnackedWindow(max_size=10, timeout=1.0, cap=4.0)
    for seq in range(3):
        w.sent(_h(seq), now=0.0)
    assert w.acked(key_of(_h(1)))
    assert not w.acked(key_of(_h(1)))  # a second ack of the same message is a no-op
    assert w.due(now=0.5) == []
    assert [h.seq for h in w.due(now=1.0)] == [0, 2]
    assert w.due(now=2.5) == []  # next resend after 2 s, then 4 s (the cap)
    assert [h.seq for h in w.due(now=3.0)] == [0, 2]
    assert [h.seq for h in w.due(now=7.0)] == [0, 2]
    assert [h.seq for h in w.due(now=10.9)] == []


def test_bounded_the_oldest_is_given_up_and_counted():
    w = UnackedWindow(max_size=3, timeout=1.0)
    evicted = sum(w.sent(_h(seq), now=0.0) for seq in range(5))
    assert evicted == 2 and len(w) == 3
    assert [h.seq for h in w.take_all()] == [2, 3, 4]


def test_take_all_of_a_session_in_send_order_and_eos_is_its_own_key():
    w = UnackedWindow(max_size=10, timeout=1.0)
    w.sent(_h(5, session="a"))
    w.sent(_h(1, session="b"))
    w.sent(_h(6, session="a"))
    w.sent(_h(6, kind="eos", session="a"))  # eos carries the next seq: a key of its own
    assert [(h.seq, h.kind) for h in w.take_all("a")] == [(5, "predictions"), (6, "predictions"), (6, "eos")]
    assert w.acked(key_of(_h(6, kind="eos", session="a"))) and len(w) == 3


def _reliable_link(data_port: int, ack_port: int):
    """A producer's end over real sockets: its data PUSH bound, its acks PULL connected, the window around them."""
    import threading

    from shared.bus.acks import ReliableLink
    from shared.bus.bus import Receiver, Sender

    sender = Sender("acktest", f"push+bind:tcp://127.0.0.1:{data_port}", threading.Event(), hwm=100)
    acks_in = Receiver("acktest", f"pull+connect:tcp://127.0.0.1:{ack_port}", expect=("ack",))
    return sender, acks_in, ReliableLink("acktest", sender, acks_in, max_size=100, timeout=30.0)


def test_a_consumer_killed_with_messages_queued_gets_them_again_when_it_returns():
    """Real sockets: the consumer dies holding unread messages; its return triggers the resend."""
    import time

    import zmq

    from shared.bus.acks import send_ack
    from shared.bus.messages import decode
    from shared.ops.ports import free_ports

    data_port, ack_port = free_ports(2)
    sender, acks_in, link = _reliable_link(data_port, ack_port)
    ctx = zmq.Context.instance()

    def consumer() -> tuple[zmq.Socket, zmq.Socket]:
        pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
        for s in (pull, push):
            s.setsockopt(zmq.LINGER, 0)
        pull.connect(f"tcp://127.0.0.1:{data_port}")
        deadline = time.monotonic() + 5
        while True:  # the closed consumer's bind is released by ZeroMQ's I/O thread, soon
            try:
                push.bind(f"tcp://127.0.0.1:{ack_port}")
                return pull, push
            except zmq.ZMQError:
                assert time.monotonic() < deadline
                time.sleep(0.05)

    def take(pull: zmq.Socket, push: zmq.Socket, n: int) -> list[int]:
        got = []
        for _ in range(n):
            assert pull.poll(5000)
            msg = decode(pull.recv_multipart())
            got.append(msg.header.seq)
            h = msg.header
            send_ack("consumer", push, h.session, h.stream, h.seq, h.t_capture, msg.kind)
        return got

    def drain_acks(until: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(link.window) > until and time.monotonic() < deadline:
            if acks_in.socket.poll(100):
                msg = acks_in.read()
                if msg is not None:
                    link.acked(msg.header)

    try:
        pull, push = consumer()
        time.sleep(0.3)
        link.tick()  # the first connection: nothing to resend yet
        for seq in range(5):
            link.send(make_header("predictions", "s", "cam0", seq, 0.0, model={}, predictions=[]))
        assert take(pull, push, 2) == [0, 1]
        drain_acks(until=3)
        assert len(link.window) == 3
        pull.close(0)  # SIGKILL-like: seq 2..4 were delivered to it and are gone with it
        push.close(0)
        pull, push = consumer()
        deadline = time.monotonic() + 10
        while not pull.poll(100):
            link.tick()  # the reconnect is seen here: everything unacknowledged goes again
            assert time.monotonic() < deadline, "nothing was resent to the returning consumer"
        assert sorted(take(pull, push, 3)) == [2, 3, 4]
        drain_acks(until=0)
        assert len(link.window) == 0
        link.end(make_header("eos", "s", "cam0", 5, 0.0, reason="end_of_file"))
        assert take(pull, push, 1) == [5]  # nothing pending: the eos goes at once
        pull.close(0)
        push.close(0)
    finally:
        link.close()
        acks_in.close()
        sender.close()


def test_gathered_acknowledgements_free_every_message_they_cover_in_a_few_messages():
    """Real sockets: 60 predictions of three streams and an eos, acknowledged as they come. The acknowledging side
    sends a handful of messages, not one a frame (each woke the sender's process); every message is freed, the eos's
    acknowledgement comes at once and after its session's others."""
    import time

    import zmq

    from shared.bus.acks import AckGatherer
    from shared.bus.messages import decode
    from shared.ops.ports import free_ports

    data_port, ack_port = free_ports(2)
    sender, acks_in, link = _reliable_link(data_port, ack_port)
    ctx = zmq.Context.instance()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    for s in (pull, push):
        s.setsockopt(zmq.LINGER, 0)
    pull.connect(f"tcp://127.0.0.1:{data_port}")
    push.bind(f"tcp://127.0.0.1:{ack_port}")
    gatherer = AckGatherer("consumer", push, gather_seconds=0.1)
    ack_messages = []
    try:
        time.sleep(0.3)
        for seq in range(20):
            for stream in ("cam0", "cam1", "cam2"):
                link.send(make_header("predictions", "s", stream, seq, 0.0, model={}, predictions=[]))
        for _ in range(60):  # taken as fast as they come: well within one gathering's 0.1 s
            assert pull.poll(5000)
            h = decode(pull.recv_multipart()).header
            gatherer.add(h.session, h.stream, h.seq, h.t_capture, "predictions")
        time.sleep(0.15)
        link.end(make_header("eos", "s", "cam0", 20, 0.0, reason="end_of_file"))  # cam0's earlier ones wait: not sent
        link.send(make_header("eos", "s", "cam1", 20, 0.0, reason="end_of_file"))
        assert pull.poll(5000)
        h = decode(pull.recv_multipart()).header
        assert (h.kind, h.stream) == ("eos", "cam1")
        gatherer.add(h.session, h.stream, h.seq, h.t_capture, "eos")  # at once, behind what waited
        deadline = time.monotonic() + 5
        while len(link.window) and time.monotonic() < deadline:
            if acks_in.socket.poll(100):
                msg = acks_in.read()
                assert msg is not None
                ack_messages.append(msg.header)
                link.acked(msg.header)
        assert len(link.window) == 0, f"{len(link.window)} messages still unacknowledged"
        assert [a.of for a in ack_messages][-1] == "eos"
        covered = sum(1 + len(a.more) for a in ack_messages)
        assert covered == 61 and len(ack_messages) <= 4, [(a.of, len(a.more)) for a in ack_messages]
        link.tick()  # cam0's eos: its session's stream is acknowledged now, so it goes
        assert pull.poll(5000)
        h = decode(pull.recv_multipart()).header
        assert (h.kind, h.stream) == ("eos", "cam0")
    finally:
        pull.close(0)
        push.close(0)
        link.close()
        acks_in.close()
        sender.close()
