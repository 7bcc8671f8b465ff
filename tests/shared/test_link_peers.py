"""The peer counter of a PUSH link sleeps until ZeroMQ has an event for it (issue 26): it woke
ten times a second in every process to look for a stop, a tenth of a paced capture's CPU. Its
thread ends when the counter is closed, or when its socket is."""

from __future__ import annotations

import threading
import time
import uuid

from shared.bus.bus import Receiver, Sender
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
