"""shared/ops/service.py's loop: a socket a handler already drained is not read again blocking.

Inference's handler reads its acks (and the batches waiting behind one) itself. When one poll
reported both the batches and the acks link readable, the loop then read the drained acks socket
blocking: it sat there until the next ack came, and never saw a stop when none came (found as an
inference process left running after its launcher was killed)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import zmq

from shared.bus.messages import Message, encode, make_header
from shared.ops.service import Service
from shared.ops.settings import InferenceSettings
from tests.harness import settings_for


@dataclass
class Running:
    """A service of the inference links, PUSH sockets connected to its inputs, its loop on a thread not yet started."""

    service: Recording
    senders: dict[str, zmq.Socket]
    thread: threading.Thread

    def send(self, link: str, kind: str, seq: int, **fields: object) -> None:
        self.senders[link].send_multipart(encode(make_header(kind, "s", "cam0", seq, time.time(), **fields)))

    def stop(self) -> None:
        """Stops the loop as the launcher does; fails when the loop does not see it."""
        self.service.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the loop did not see its stop"


@contextmanager
def running(service_type: type[Recording], tmp_path, links: tuple[str, ...], **values: object) -> Iterator[Running]:
    base = f"ipc://{tmp_path}/{uuid.uuid4().hex[:6]}"
    service = service_type(settings_for("inference", predictions_out=f"push+bind:{base}-predictions",
                                        **{f"{link}_in": f"pull+bind:{base}-{link}" for link in links}, **values))
    ctx = zmq.Context.instance()
    senders = {link: ctx.socket(zmq.PUSH) for link in links}
    thread = threading.Thread(target=service.loop, name="loop", daemon=True)
    try:
        service.start()
        for link, sock in senders.items():
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(f"{base}-{link}")
        yield Running(service, senders, thread)
    finally:
        service.stop.set()
        if thread.is_alive():
            thread.join(10)
        if not thread.is_alive():
            service.finish()
        for sock in senders.values():
            sock.close(0)


def wait_until(done, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


class Recording(Service[InferenceSettings]):
    """The inference service's links (from the table); what its handler saw is kept in `handled`."""

    name = "inference"

    def __init__(self, settings: InferenceSettings) -> None:
        super().__init__(settings)
        self.handled: list = []


class DrainsAcks(Recording):
    """A handler that drains the acks as inference's does."""

    def handle(self, link: str, msg: Message) -> None:
        self.handled.append(f"{link}:{msg.kind}")
        acks = self.receivers["acks"]
        while acks.socket.poll(0):
            got = acks.read()
            if got is not None:
                self.handled.append(f"acks:{got.kind} (drained)")


def test_a_socket_drained_by_a_handler_does_not_block_the_loop_or_its_stop(tmp_path):
    with running(DrainsAcks, tmp_path, ("batches", "acks")) as run:
        # Both waiting before the loop's first poll: it reports both links readable at once.
        run.send("acks", "ack", 1, of="predictions")
        run.send("batches", "eos", 2, reason="end_of_file")
        for receiver in run.service.receivers.values():
            assert receiver.socket.poll(5000)
        run.thread.start()
        wait_until(lambda: len(run.service.handled) >= 2)
        assert run.service.handled == ["batches:eos", "acks:ack (drained)"], run.service.handled
        run.stop()  # nothing more arrives, as when the launcher is gone: no blocking read of the drained acks


class Records(Recording):
    """A handler that records each message's seq and fails on one."""

    def handle(self, link: str, msg: Message) -> None:
        if msg.header.seq == 5:
            raise RuntimeError("a handler's bug")
        self.handled.append(msg.header.seq)


def test_a_run_of_waiting_messages_is_handled_in_order_past_a_failing_one(tmp_path, metric):
    """The loop takes up to DRAIN_MAX messages from a link a poll: every one is handled, in order, a
    message that breaks the handler is counted and the next ones still come."""
    failed_before = metric("engagement_messages_rejected_total", service="inference", reason="handler_error")
    with running(Records, tmp_path, ("batches",)) as run:
        for seq in range(40):  # more than a drain's worth, all waiting before the loop starts
            run.send("batches", "eos", seq, reason="end_of_file")
        wait_until(run.service.receivers["batches"].waiting)
        run.thread.start()
        wait_until(lambda: len(run.service.handled) >= 39)
        assert run.service.handled == [seq for seq in range(40) if seq != 5]
        assert metric("engagement_messages_rejected_total", service="inference",
                      reason="handler_error") == failed_before + 1
        run.stop()


class Interleaves(Recording):
    """A handler that records the link of each message, draining nothing."""

    def handle(self, link: str, msg: Message) -> None:
        self.handled.append(link)


def test_the_links_take_turns_as_one_poll_a_message_had_them(tmp_path):
    """A run of messages on two links is read one of each in turn, never one link to its end first: the
    reporter draws each preview frame with its update, and a link read to its end first had the class's eos
    handled (its recording closed) before the last frames (a recording of 6 frames kept 2)."""
    # Queues deeper than six: with the common HWM (4) a link's last two came in only as the loop read the first
    # ones, refilled by ZeroMQ's I/O thread, which a loaded box (a CI run) left behind the loop: one link's queue
    # was empty for a turn and the other's was read twice in a row. All twelve wait before the loop starts.
    with running(Interleaves, tmp_path, ("batches", "acks"), hwm=1000) as run:
        for seq in range(6):  # all waiting before the loop's first poll
            run.send("acks", "ack", seq, of="predictions")
            run.send("batches", "eos", seq, reason="end_of_file")
        wait_until(lambda: all(r.waiting() for r in run.service.receivers.values()))
        time.sleep(0.2)  # the last of each link's six in its queue too
        run.thread.start()
        wait_until(lambda: len(run.service.handled) >= 12)
        assert sorted(run.service.handled) == ["acks"] * 6 + ["batches"] * 6
        assert all(a != b for a, b in itertools.pairwise(run.service.handled)), run.service.handled
        run.stop()


class CountingStop(threading.Event):
    """A service's stop event that counts the loop's gathering pauses (a wait as long as GATHER_SECONDS)."""

    def __init__(self, pause: float) -> None:
        super().__init__()
        self.pause, self.pauses = pause, 0

    def wait(self, timeout: float | None = None) -> bool:
        if timeout == self.pause:
            self.pauses += 1
        return super().wait(timeout)


class CountsRuns(Recording):
    """Records each message's seq, and how many each run of messages brought (after_turns)."""

    def __init__(self, settings: InferenceSettings) -> None:
        super().__init__(settings)
        self.runs: list[int] = []

    def handle(self, link: str, msg: Message) -> None:
        self.handled.append(msg.header.seq)

    def after_turns(self) -> None:
        self.runs.append(len(self.handled) - sum(self.runs))


def test_a_gathering_service_pauses_after_a_run_that_emptied_its_links_never_while_messages_wait(tmp_path):
    """GATHER_SECONDS: a pause after each run that took everything waiting; a run cut short by DRAIN_MAX with more
    waiting is followed by the next at once (a pause after every run would cap a service at DRAIN_MAX messages a
    pause, and a service behind would fall further behind)."""
    with running(CountsRuns, tmp_path, ("batches",), gather_seconds=0.05, hwm=1000) as run:
        run.service.stop = stop = CountingStop(run.service.gather_seconds)
        for seq in range(100):  # six runs' worth and more, all waiting before the loop starts
            run.send("batches", "eos", seq, reason="end_of_file")
        wait_until(run.service.receivers["batches"].waiting)
        time.sleep(0.3)  # the I/O thread moves the rest into the socket's queue (settling, not a measurement)
        run.thread.start()
        wait_until(lambda: len(run.service.handled) >= 100)
        wait_until(lambda: stop.pauses >= 1)
        assert run.service.handled == list(range(100))
        assert len(run.service.runs) >= 7 and sum(run.service.runs) == 100, run.service.runs
        assert stop.pauses <= 2, f"{stop.pauses} pauses for runs of {run.service.runs}"
        run.stop()
