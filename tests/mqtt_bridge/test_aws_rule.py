"""The AWS IoT topic rules match what the bridge publishes (AWS itself cannot run here), and
the parts the parts rule writes are joined by the consumer's `reassemble`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import paho.mqtt.client as mqtt

from services.mqtt_bridge.s3_consumer import DirectoryStore, ReportStore
from shared.data import envelope

AWS = Path(__file__).resolve().parents[2] / "services" / "mqtt_bridge" / "aws"


def _rule(name: str) -> dict:
    return json.loads((AWS / name).read_text())


def test_rules_select_the_bridge_topics_and_key_objects_by_id() -> None:
    for name, parts_clause in [("topic_rule.json", "isUndefined(parts)"),
                               ("topic_rule_parts.json", "NOT isUndefined(parts)")]:
        rule = _rule(name)
        topic_filter = re.search(r"FROM '([^']+)'", rule["sql"]).group(1)
        for kind in envelope.TYPES:
            assert mqtt.topic_matches_sub(topic_filter, f"engagement/jetson-01/{kind}")
        assert parts_clause in rule["sql"] and "schema = 1" in rule["sql"]
        key = rule["actions"][0]["s3"]["key"]
        assert "${id}" in key and key.startswith("${PREFIX}/")
    for name in AWS.glob("*.json"):
        json.loads(name.read_text())  # every file is valid JSON


def test_parts_written_by_the_rule_are_reassembled(tmp_path: Path) -> None:
    body = {"rows": [f"row {i}" for i in range(3000)]}
    raw = json.dumps({"schema": 1, "type": "report", "id": "s9:report", "device_id": "jetson-01",
                      "session": "s9", "sent_at": 1.0, "body": body}).encode()
    parts = envelope.split(envelope.parse(raw), 8192)
    assert len(parts) > 2
    store = DirectoryStore(tmp_path)
    for p in parts:  # the parts rule's key: <prefix>/_parts/${id}/${part}.json (no padding)
        store.put(f"engagement/_parts/s9:report/{json.loads(p)['part']}.json", p)
    reports = ReportStore(store, "engagement")
    assert reports.reassemble_all() == 1
    saved = json.loads(store.get("engagement/jetson-01/report/s9/s9:report.json"))
    assert saved["body"] == body
    assert reports.reassemble_all() == 0
