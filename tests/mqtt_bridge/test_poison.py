"""Poison messages: whatever the local broker hands the bridge, at any depth or size, is either
queued or dead-lettered, and acknowledged once (issue 22, item 7).

Before: a deeply nested JSON raised RecursionError inside the message callback; the bridge took
it for a failed queue write, did not acknowledge it and reconnected, so the broker redelivered
it forever (94 error lines in 75 s). Real bridge process, the machine's Mosquitto, a TLS
Mosquitto as the cloud.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.data import envelope as envelope_module
from tests.mqtt_bridge.helpers import (
    Bridge,
    Certs,
    CloudBroker,
    cloud_subscriber,
    envelope,
    free_port,
)
from tests.support.metrics import metric_sum, scrape

DEEP = 100_000  # far past Python's recursion limit (1000)
POISON: list[tuple[str, bytes, str]] = [
    ("deep array", b"[" * DEEP + b"]" * DEEP, "too_deep"),
    ("deep object", b'{"a":' * 5000 + b"1" + b"}" * 5000, "too_deep"),
    ("deep body", b'{"schema":1,"type":"report","id":"x","body":{"a":' + b"[" * DEEP + b"]" * DEEP + b"}}",
     "too_deep"),
    ("5000-digit integer", b'{"schema":1,"type":"report","id":"x","body":{"n":' + b"7" * 5000 + b"}}", "not_json"),
    ("too large", b"x" * (300 * 1024), "too_large"),  # over BRIDGE_MAX_PARTS=2 x 128 KB below
    ("binary", bytes(range(256)) * 4, "not_json"),
]


def test_poison_is_dead_lettered_and_acknowledged_once(certs: Certs, cloud_broker: CloudBroker, device: str,
                                                        tmp_path: Path) -> None:
    col = cloud_subscriber(certs, cloud_broker.port, f"engagement/{device}/report")
    metrics_port = free_port()
    queue_path = tmp_path / "queue.sqlite3"
    bridge = Bridge(device, queue_path, cloud_broker.port, certs, METRICS_PORT=str(metrics_port),
                    BRIDGE_MAX_PARTS="2").start()
    try:
        bridge.wait_connected()
        for _, payload, _ in POISON:
            bridge.publish("report", payload)
        # A good report behind the poison still goes through: nothing is stuck.
        bridge.publish("report", envelope(device, "report", "after-poison"))
        assert col.wait_for(lambda: [p["id"] for p in col.payloads("/report")] == ["after-poison"])
        rows = bridge.query("SELECT reason, length(payload) FROM dead_letter ORDER BY seq")
        assert [r for r, _ in rows] == [reason for _, _, reason in POISON], rows
        assert all(size <= 64 * 1024 for _, size in rows)  # the head of each, not the disk's worth
        samples = scrape(metrics_port, timeout=5)
        for reason in {r for _, _, r in POISON}:
            expected = sum(r == reason for _, _, r in POISON)
            assert metric_sum(samples, "engagement_mqtt_bridge_dead_lettered_total", reason=reason) == expected
        time.sleep(1.0)  # a redelivery, had one been due, would come now
    finally:
        code = bridge.stop()
    text = bridge.log_path.read_text()
    assert code == 0, text
    assert "not acknowledged" not in text and "Traceback" not in text, text
    assert text.count("dead-lettered") == len(POISON), text  # one line each, never repeated

    # Acknowledged: the broker keeps the bridge's persistent session, and redelivers nothing to
    # the next start (an unacknowledged message would come again now).
    bridge = Bridge(device, queue_path, cloud_broker.port, certs, BRIDGE_MAX_PARTS="2").start()
    try:
        bridge.wait_connected()
        time.sleep(1.5)
    finally:
        assert bridge.stop() == 0
        col.close()
    assert bridge.query("SELECT COUNT(*) FROM dead_letter") == [(len(POISON),)]
    assert len(col.payloads("/report")) == 1


def _nested(depth: int, inner: bytes) -> bytes:
    return b'{"k":[' * depth + inner + b"]}" * depth


@settings(max_examples=60, deadline=None)
@given(st.one_of(
    st.binary(max_size=2000),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                 lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                 max_leaves=40).map(lambda doc: json.dumps(doc).encode()),
    st.builds(_nested, st.integers(1, 60_000), st.sampled_from([b"1", b'"x"', b"", b"{", b"]"])),
))
def test_parse_gives_an_envelope_or_a_reason_for_any_bytes(payload: bytes) -> None:
    try:
        env = envelope_module.parse(payload)
    except envelope_module.InvalidPayload as exc:
        assert exc.reason
        return
    assert env.type in envelope_module.TYPES


@pytest.mark.parametrize("depth", [10, 900, 5000, 100_000])
def test_split_of_a_deep_body_is_parts_or_a_reason(depth: int) -> None:
    deep = b'{"a":' * depth + b"1" + b"}" * depth
    raw = b'{"schema":1,"type":"report","id":"x","body":{"pad":"' + b"p" * 200_000 + b'","deep":' + deep + b"}}"
    try:
        parts = envelope_module.split(envelope_module.parse(raw), max_bytes=128 * 1024, max_parts=64)
    except envelope_module.InvalidPayload as exc:
        assert exc.reason == "too_deep" and depth > 900
        return
    assert all(len(p) <= 128 * 1024 for p in parts)
