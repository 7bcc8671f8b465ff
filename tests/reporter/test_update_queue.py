"""The updates link holds a stall: a busy box keeps the reporter (or the aggregator's I/O) off the CPU for a
moment, and what the aggregator sends meanwhile (droppable: it never waits for the overlay) must not be lost."""

from __future__ import annotations

import threading
import time

import zmq

from shared.bus import metrics
from shared.bus.bus import Receiver, Sender
from shared.bus.links import BY_NAME
from shared.bus.messages import make_header
from shared.data.running_totals import Totals
from shared.data.totals import empty_totals
from tests.harness import settings_for

STREAMS = 80  # a box's worth of webcams: each update carries every stream's totals
STALL = 320  # two seconds of their updates at 2 FPS


def _update(seq: int) -> object:
    totals = {**empty_totals(), "streams": {f"cam{i}": empty_totals() for i in range(STREAMS)}}
    return make_header("update", "s", f"cam{seq % STREAMS}", seq, 0.0, totals=Totals.of(totals), predictions=[])


def _sent_while_nobody_reads(tmp_path, hwm: int) -> tuple[int, list[int]]:
    """(updates dropped, seqs then read) for STALL updates sent while nothing reads, `hwm` on each side."""
    endpoint = f"ipc://{tmp_path}/updates-{hwm}"
    service = f"updates-test-{hwm}"
    sender = Sender(service, f"push+bind:{endpoint}", threading.Event(), hwm=hwm)
    receiver = Receiver(service, f"pull+connect:{endpoint}", hwm=hwm)
    try:
        assert sender.socket.poll(5000, 2)  # connected (zmq.POLLOUT)
        before = metrics.FRAMES_DROPPED.labels(service, "queue_full")._value.get()
        dropped = 0
        for seq in range(STALL):  # paced as a busy aggregator sends them, about six times faster than 80 webcams'
            dropped += not sender.send(_update(seq), droppable=True)
            time.sleep(0.001)
        assert metrics.FRAMES_DROPPED.labels(service, "queue_full")._value.get() - before == dropped
        seqs = []
        while receiver.socket.poll(500):
            msg = receiver.read()
            assert msg is not None
            seqs.append(msg.header.seq)
        return dropped, seqs
    finally:
        sender.close()
        receiver.close()


def test_two_seconds_of_a_full_boxs_updates_wait_for_a_stalled_reporter(tmp_path):
    common, queue = settings_for("reporter").hwm, BY_NAME["updates"].queue
    dropped, seqs = _sent_while_nobody_reads(tmp_path, max(common, queue))  # as the services open the link
    assert dropped == 0 and seqs == list(range(STALL))
    # The common depth, as the link had: the same stall loses updates (what the link's queue is for).
    dropped, seqs = _sent_while_nobody_reads(tmp_path, common)
    assert dropped > 0 and len(seqs) == STALL - dropped


def test_both_services_open_the_updates_link_that_deep(tmp_path):
    from services.aggregator.service import AggregatorService
    from services.reporter.service import ReporterService

    endpoint = f"ipc://{tmp_path}/updates"
    aggregator = AggregatorService(settings_for("aggregator", updates_out=f"push+bind:{endpoint}",
                                                predictions_in="", acks_out=""))
    reporter = ReporterService(settings_for("reporter", updates_in=f"pull+connect:{endpoint}", preview_in="",
                                            live_out=""))
    try:
        aggregator.open_sockets()
        reporter.open_sockets()
        assert aggregator.senders["updates"].socket.getsockopt(zmq.SNDHWM) == BY_NAME["updates"].queue
        assert reporter.receivers["updates"].socket.getsockopt(zmq.RCVHWM) == BY_NAME["updates"].queue
    finally:
        for sock in [*aggregator.senders.values(), *reporter.receivers.values()]:
            sock.close()
