"""`engagement outbox flush` beside a running reporter of the same device, on a real Mosquitto: the
flush has a client id of its own, so it never pushes the reporter off the broker (a broker lets one
connection hold a client id), and its own disconnect at the end is no warning."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from services.reporter import outbox
from services.reporter.messaging import Publisher
from shared.data.durable_queue import DurableQueue
from tests.mqtt_bridge.helpers import PlainBroker
from tests.support.mqtt import Collector
from tests.support.waiting import wait_for


def test_a_flush_beside_a_running_reporter_keeps_it_connected(tmp_path: Path, caplog) -> None:
    broker = PlainBroker(tmp_path)
    broker.start()
    device, session = f"flush-{uuid.uuid4().hex[:8]}", "s-flush"
    reporter = Publisher("127.0.0.1", broker.port, device)  # the running reporter's connection
    dropped: list[object] = []
    on_disconnect = reporter.client.on_disconnect
    reporter.client.on_disconnect = lambda *a: (dropped.append(a[3]), on_disconnect(*a))
    collector = Collector(broker.port, device)
    path = tmp_path / "outbox.sqlite3"
    try:
        assert reporter.connected.wait(10)
        queue = DurableQueue(path)  # what an earlier class left, its broker down then
        queue.enqueue(f"{session}:report", "report", reporter.topic("report"),
                      [reporter.envelope("report", f"{session}:report", session, {"totals": {"frames": 3}})])
        queue.close()
        with caplog.at_level(logging.INFO):
            code = outbox.main(["flush", "--outbox-path", str(path), "--mqtt-port", str(broker.port),
                                "--device-id", device])
        assert code == 0
        wait_for(lambda: collector.ids() == [f"{session}:report"], "the report at the broker", timeout=10)
        assert reporter.connected.is_set() and dropped == [], dropped  # never pushed off
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "disconnected" in r.getMessage()]
    finally:
        collector.close()
        reporter.close()
        broker.stop()
