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

import zmq

from shared.bus.messages import Message, encode, make_header
from shared.ops.service import Service
from shared.ops.settings import InferenceSettings
from tests.harness import settings_for


class DrainsAcks(Service[InferenceSettings]):
    """The inference service's links (from the table), a handler that drains the acks as it does."""

    name = "inference"

    def __init__(self, settings: InferenceSettings) -> None:
        super().__init__(settings)
        self.handled: list[str] = []

    def handle(self, link: str, msg: Message) -> None:
        self.handled.append(f"{link}:{msg.kind}")
        acks = self.receivers["acks"]
        while acks.socket.poll(0):
            got = acks.read()
            if got is not None:
                self.handled.append(f"acks:{got.kind} (drained)")


def test_a_socket_drained_by_a_handler_does_not_block_the_loop_or_its_stop(tmp_path):
    base = f"ipc://{tmp_path}/{uuid.uuid4().hex[:6]}"
    service = DrainsAcks(settings_for("inference", batches_in=f"pull+bind:{base}-batches",
                                      acks_in=f"pull+bind:{base}-acks",
                                      predictions_out=f"push+bind:{base}-predictions"))
    ctx = zmq.Context.instance()
    batches, acks = ctx.socket(zmq.PUSH), ctx.socket(zmq.PUSH)
    thread = threading.Thread(target=service.loop, name="loop", daemon=True)
    try:
        service.start()
        for sock, link in ((batches, "batches"), (acks, "acks")):
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(f"{base}-{link}")
        # Both waiting before the loop's first poll: it reports both links readable at once.
        acks.send_multipart(encode(make_header("ack", "s", "cam0", 1, time.time(), of="predictions")))
        batches.send_multipart(encode(make_header("eos", "s", "cam0", 2, time.time(), reason="end_of_file")))
        for receiver in service.receivers.values():
            assert receiver.socket.poll(5000)
        thread.start()
        deadline = time.monotonic() + 10
        while len(service.handled) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.handled == ["batches:eos", "acks:ack (drained)"], service.handled
        service.stop.set()  # nothing more arrives, as when the launcher is gone
        thread.join(10)
        assert not thread.is_alive(), "the loop sat in a blocking read of the drained acks socket"
    finally:
        service.stop.set()
        if not thread.is_alive():
            service.finish()
        batches.close(0)
        acks.close(0)


class Records(Service[InferenceSettings]):
    """The inference service's links; a handler that records each message and fails on one."""

    name = "inference"

    def __init__(self, settings: InferenceSettings) -> None:
        super().__init__(settings)
        self.handled: list[int] = []

    def handle(self, link: str, msg: Message) -> None:
        if msg.header.seq == 5:
            raise RuntimeError("a handler's bug")
        self.handled.append(msg.header.seq)


def test_a_run_of_waiting_messages_is_handled_in_order_past_a_failing_one(tmp_path, metric):
    """The loop takes up to DRAIN_MAX messages from a link a poll: every one is handled, in order, a
    message that breaks the handler is counted and the next ones still come."""
    base = f"ipc://{tmp_path}/{uuid.uuid4().hex[:6]}"
    service = Records(settings_for("inference", batches_in=f"pull+bind:{base}-batches",
                                   predictions_out=f"push+bind:{base}-predictions"))
    sender = zmq.Context.instance().socket(zmq.PUSH)
    thread = threading.Thread(target=service.loop, name="loop", daemon=True)
    failed_before = metric("engagement_messages_rejected_total", service="inference", reason="handler_error")
    try:
        service.start()
        sender.setsockopt(zmq.LINGER, 0)
        sender.connect(f"{base}-batches")
        for seq in range(40):  # more than a drain's worth, all waiting before the loop starts
            sender.send_multipart(encode(make_header("eos", "s", "cam0", seq, time.time(), reason="end_of_file")))
        deadline = time.monotonic() + 10
        while not service.receivers["batches"].waiting() and time.monotonic() < deadline:
            time.sleep(0.01)
        thread.start()
        while len(service.handled) < 39 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.handled == [seq for seq in range(40) if seq != 5]
        assert metric("engagement_messages_rejected_total", service="inference",
                      reason="handler_error") == failed_before + 1
        service.stop.set()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        service.stop.set()
        if not thread.is_alive():
            service.finish()
        sender.close(0)


class Interleaves(Service[InferenceSettings]):
    """The inference service's links; a handler that records the link of each message, draining nothing."""

    name = "inference"

    def __init__(self, settings: InferenceSettings) -> None:
        super().__init__(settings)
        self.handled: list[str] = []

    def handle(self, link: str, msg: Message) -> None:
        self.handled.append(link)


def test_the_links_take_turns_as_one_poll_a_message_had_them(tmp_path):
    """A run of messages on two links is read one of each in turn, never one link to its end first: the
    reporter draws each preview frame with its update, and a link read to its end first had the class's eos
    handled (its recording closed) before the last frames (a recording of 6 frames kept 2)."""
    base = f"ipc://{tmp_path}/{uuid.uuid4().hex[:6]}"
    service = Interleaves(settings_for("inference", batches_in=f"pull+bind:{base}-batches",
                                       acks_in=f"pull+bind:{base}-acks",
                                       predictions_out=f"push+bind:{base}-predictions"))
    ctx = zmq.Context.instance()
    batches, acks = ctx.socket(zmq.PUSH), ctx.socket(zmq.PUSH)
    thread = threading.Thread(target=service.loop, name="loop", daemon=True)
    try:
        service.start()
        for sock, link in ((batches, "batches"), (acks, "acks")):
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(f"{base}-{link}")
        for seq in range(6):  # all waiting before the loop's first poll
            acks.send_multipart(encode(make_header("ack", "s", "cam0", seq, time.time(), of="predictions")))
            batches.send_multipart(encode(make_header("eos", "s", "cam0", seq, time.time(), reason="end_of_file")))
        deadline = time.monotonic() + 10
        while not all(r.waiting() for r in service.receivers.values()) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the last of each link's six in its queue too
        thread.start()
        while len(service.handled) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(service.handled) == ["acks"] * 6 + ["batches"] * 6
        assert all(a != b for a, b in itertools.pairwise(service.handled)), service.handled
    finally:
        service.stop.set()
        thread.join(10)
        if not thread.is_alive():
            service.finish()
        batches.close(0)
        acks.close(0)
