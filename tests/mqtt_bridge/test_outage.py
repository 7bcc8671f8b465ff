"""Outage: the cloud broker is down, 100 reports are published, the bridge is SIGKILLed, then
the cloud broker and the bridge come back: every report arrives, none twice after dedupe by id.
Prints the figures (sent, delivered, duplicates before dedupe, time to drain)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from services.mqtt_bridge.s3_consumer import DirectoryStore, ReportStore
from tests.mqtt_bridge.helpers import (
    Bridge,
    Certs,
    CloudBroker,
    cloud_subscriber,
    envelope,
)
from tests.support.waiting import wait_until


def _outage(certs: Certs, cloud_broker: CloudBroker, device: str, tmp_path: Path, n: int,
            kill_mid_drain: bool) -> None:
    queue_path = tmp_path / "queue.sqlite3"
    cloud_broker.stop()
    bridge = Bridge(device, queue_path, cloud_broker.port, certs).start()
    ids = [f"outage-{i:03d}" for i in range(n)]
    try:
        assert wait_until(lambda: "local broker: subscribed" in bridge.log_path.read_text())
        for msg_id in ids:
            bridge.publish("report", envelope(device, "report", msg_id))
        # Every report is committed to the queue before the local broker got its PUBACK.
        assert wait_until(lambda: bridge.query("SELECT COUNT(*) FROM outbox")[0][0] == n)
    finally:
        bridge.kill()  # SIGKILL: nothing flushed, nothing said

    cloud_broker.start()
    col = cloud_subscriber(certs, cloud_broker.port, f"engagement/{device}/report")
    started = time.monotonic()
    bridge = Bridge(device, queue_path, cloud_broker.port, certs).start()
    try:
        if kill_mid_drain:
            assert col.wait_for(lambda: len(col.messages) >= n // 3)
            bridge.kill()
            bridge = Bridge(device, queue_path, cloud_broker.port, certs).start()
        assert col.wait_for(lambda: {p["id"] for p in col.payloads("/report")} >= set(ids), timeout=60)
        drained = time.monotonic() - started
        assert wait_until(lambda: bridge.query("SELECT COUNT(*) FROM outbox")[0][0] == 0)
    finally:
        assert bridge.stop() == 0
        col.close()

    raw = [p for t, p in col.messages if t.endswith("/report")]
    received = col.payloads("/report")
    per_id = Counter(p["id"] for p in received)
    # The cloud side's dedupe by id: the S3 consumer's logic over a real directory.
    store = ReportStore(DirectoryStore(tmp_path / "bucket"), "reports")
    outcomes = Counter(store.handle(p) for p in raw)
    stored = list((tmp_path / "bucket" / "reports" / device / "report" / "s1").iterdir())
    print(f"\noutage{' (bridge also killed mid-drain)' if kill_mid_drain else ''}: sent={n} "
          f"delivered_unique={len(per_id)} deliveries={len(received)} "
          f"duplicates_before_dedupe={len(received) - len(per_id)} stored_after_dedupe={len(stored)} "
          f"time_to_drain={drained:.2f}s")
    assert set(per_id) == set(ids)
    assert outcomes["stored"] == n and outcomes["duplicate"] == len(received) - n
    assert sorted(p.name for p in stored) == sorted(f"{i}.json" for i in ids)


def test_outage_100_reports_survive_sigkill(certs: Certs, cloud_broker: CloudBroker, device: str,
                                            tmp_path: Path) -> None:
    _outage(certs, cloud_broker, device, tmp_path, 100, kill_mid_drain=False)


@pytest.mark.slow
def test_outage_bridge_killed_again_while_draining(certs: Certs, cloud_broker: CloudBroker, device: str,
                                                   tmp_path: Path) -> None:
    _outage(certs, cloud_broker, device, tmp_path, 300, kill_mid_drain=True)
