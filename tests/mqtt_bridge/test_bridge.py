"""The bridge as a real process between the real local Mosquitto and a TLS Mosquitto standing
in for AWS IoT Core."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from services.mqtt_bridge.s3_consumer import DirectoryStore, ReportStore
from tests.mqtt_bridge.helpers import (
    Bridge,
    Certs,
    CloudBroker,
    PlainBroker,
    cloud_subscriber,
    envelope,
    free_port,
)
from tests.support.metrics import metric_sum, scrape
from tests.support.waiting import wait_until


def test_forwards_dead_letters_and_splits(certs: Certs, cloud_broker: CloudBroker, device: str,
                                          tmp_path: Path) -> None:
    col = cloud_subscriber(certs, cloud_broker.port, f"engagement/{device}/#")
    metrics_port = free_port()
    bridge = Bridge(device, tmp_path / "queue.sqlite3", cloud_broker.port, certs,
                    METRICS_PORT=str(metrics_port)).start()
    try:
        bridge.wait_connected()
        # (a) a report and a totals message published locally arrive on the cloud broker.
        bridge.publish("report", envelope(device, "report", "s1:report"))
        bridge.publish("totals", envelope(device, "totals", "s1:totals:1"))
        assert col.wait_for(lambda: col.payloads("/report") and col.payloads("/totals"))
        assert col.payloads("/report")[0]["id"] == "s1:report"
        assert col.payloads("/totals")[0]["body"] == {"n": "s1:totals:1"}
        assert col.wait_for(lambda: any(t.endswith("/status") and p == b"online" for t, p in col.messages))

        # (d) bad payloads: dead-lettered, counted in the table, never forwarded.
        bad = [b"not json", json.dumps({"schema": 2, "type": "report", "id": "x", "body": {}}).encode(),
               json.dumps({"schema": 1, "type": "report", "body": {}}).encode(),
               envelope(device, "totals", "on-the-wrong-topic")]
        for payload in bad:
            bridge.publish("report", payload)
        assert wait_until(lambda: bridge.query("SELECT COUNT(*) FROM dead_letter")[0][0] == 4)
        reasons = sorted(r for (r,) in bridge.query("SELECT reason FROM dead_letter"))
        assert reasons == ["bad_id", "not_json", "type_topic_mismatch", "wrong_schema"]

        # (e) a report over AWS IoT's 128 KB is split; the S3 side reassembles it.
        body = {"students": [{"id": f"student-{i}", "note": "x\"y" * 20, "levels": [i % 4] * 30}
                             for i in range(1500)]}
        big = envelope(device, "report", "s2:report", body)
        assert len(big) > 128 * 1024
        bridge.publish("report", big)
        assert col.wait_for(lambda: any(p.get("id") == "s2:report" and p["part"] == p["parts"]
                                        for p in col.payloads("/report") if "parts" in p))
        parts = [p for t, p in col.messages if b'"s2:report"' in p]
        assert len(parts) >= 2 and all(len(p) <= 128 * 1024 for p in parts)
        store = ReportStore(DirectoryStore(tmp_path / "bucket"), "reports")
        outcomes = [store.handle(p) for p in parts]
        assert outcomes.count("stored") == 1 and outcomes[-1] == "stored"
        whole = json.loads((tmp_path / "bucket" / "reports" / device / "report" / "s1" / "s2:report.json").read_text())
        assert whole["body"] == body
        # Bad payloads were not forwarded; the queue is empty once everything was acknowledged.
        assert not any(b"on-the-wrong-topic" in p or p == b"not json" for _, p in col.messages)
        assert wait_until(lambda: bridge.query("SELECT COUNT(*) FROM outbox")[0][0] == 0)

        # Metrics: forwarded rows (1 report + 1 totals + the parts), dead letters, link states.
        samples = scrape(metrics_port, timeout=5)
        assert metric_sum(samples, "engagement_mqtt_bridge_forwarded_total", type="report") == 1 + len(parts)
        assert metric_sum(samples, "engagement_mqtt_bridge_forwarded_total", type="totals") == 1
        assert metric_sum(samples, "engagement_mqtt_bridge_dead_lettered_total", reason="not_json") == 1
        assert metric_sum(samples, "engagement_mqtt_bridge_connected", broker="cloud") == 1
        assert metric_sum(samples, "engagement_mqtt_bridge_connected", broker="local") == 1
        assert metric_sum(samples, "engagement_mqtt_bridge_split_total") == 1
        def gauge(name: str) -> float:  # -1 when the service does not serve it
            return scrape(metrics_port, timeout=5).get((name, ()), -1.0)

        assert wait_until(lambda: gauge("engagement_mqtt_bridge_queued_messages") == 0)
        assert gauge("engagement_mqtt_bridge_oldest_queued_age_seconds") == 0
        health = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5)
        assert health.status == 200
    finally:
        code = bridge.stop()
        col.close()
    assert code == 0, bridge.log_path.read_text()
    assert "stopped" in bridge.log_path.read_text()


def test_untrusted_client_certificate_is_one_clear_error(certs: Certs, cloud_broker: CloudBroker,
                                                          device: str, tmp_path: Path) -> None:
    # (c) signed by a CA the cloud broker does not trust: refused at the TLS handshake.
    bridge = Bridge(device, tmp_path / "queue.sqlite3", cloud_broker.port, certs, cert="rogue")
    code, text = bridge.start().exit_status()
    assert code == 3, text
    assert text.count("refused our client certificate") == 1, text
    assert "Traceback" not in text


def test_expired_certificate_is_refused_at_start_up(certs: Certs, device: str, tmp_path: Path) -> None:
    code, text = Bridge(device, tmp_path / "queue.sqlite3", 1, certs, cert="expired").start().exit_status()
    assert code == 3, text
    assert text.count("ERROR") == 1 and "expired on" in text, text
    assert not (tmp_path / "queue.sqlite3").exists()  # it stopped before doing anything


def test_clean_stop_leaves_queued_rows_for_the_next_start(certs: Certs, cloud_broker: CloudBroker,
                                                          device: str, tmp_path: Path) -> None:
    cloud_broker.stop()
    bridge = Bridge(device, tmp_path / "queue.sqlite3", cloud_broker.port, certs).start()
    try:
        assert wait_until(lambda: "local broker: subscribed" in bridge.log_path.read_text())
        bridge.publish("report", envelope(device, "report", "kept"))
        assert wait_until(lambda: bridge.query("SELECT msg_id FROM outbox") == [("kept",)])
        time.sleep(0.5)
    finally:
        assert bridge.stop() == 0
    text = bridge.log_path.read_text()
    # Reconnect attempts to the stopped cloud broker are logged once, not once per attempt.
    assert text.count("cloud broker: ") == 1, text
    assert bridge.query("SELECT msg_id FROM outbox") == [("kept",)]


def test_server_certificate_not_trusted_is_one_clear_error(certs: Certs, cloud_broker: CloudBroker,
                                                           device: str, tmp_path: Path) -> None:
    bridge = Bridge(device, tmp_path / "queue.sqlite3", cloud_broker.port, certs, CLOUD_CA_FILE=certs.rogueca_pem)
    code, text = bridge.start().exit_status()
    assert code == 3, text
    assert text.count("not trusted by CLOUD_CA_FILE") == 1, text


def test_reconnects_and_resubscribes_to_both_brokers(certs: Certs, device: str, tmp_path: Path) -> None:
    # The cloud keeps the collector's session across its restart (as AWS IoT Core does): the
    # bridge may deliver the queued report before the collector is back (a CI run lost it to that race).
    (tmp_path / "cloud").mkdir()
    cloud_broker = CloudBroker(certs, tmp_path / "cloud", persistent=True)
    cloud_broker.start()
    col = cloud_subscriber(certs, cloud_broker.port, f"engagement/{device}/report", persistent=True)
    local = PlainBroker(tmp_path)
    local.start()
    bridge = Bridge(device, tmp_path / "queue.sqlite3", cloud_broker.port, certs,
                    MQTT_PORT=str(local.port)).start()
    try:
        bridge.wait_connected()
        # The local broker restarts without persistence: it forgot the bridge's subscription.
        local.stop()
        local.start()
        # At least once more: on a loaded machine a reconnect can race the broker's start and take two.
        assert wait_until(lambda: bridge.log_path.read_text().count("local broker: subscribed") >= 2), \
            bridge.log_path.read_text()
        # The cloud broker goes away and comes back while a report waits in the queue.
        cloud_broker.stop()
        bridge.publish("report", envelope(device, "report", "after-restarts"))
        assert wait_until(lambda: bridge.query("SELECT msg_id FROM outbox") == [("after-restarts",)])
        cloud_broker.start()
        assert col.wait_for(lambda: [p["id"] for p in col.payloads("/report")] == ["after-restarts"]), \
            bridge.log_path.read_text()
        assert bridge.log_path.read_text().count("cloud broker: connected") >= 2
    finally:
        code = bridge.stop()
        local.stop()
        col.close()
        cloud_broker.stop()
    assert code == 0
