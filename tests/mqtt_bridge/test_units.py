"""Envelope validation/splitting, the SQLite queue and the S3-side store, on real files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.mqtt_bridge.s3_consumer import DirectoryStore, ReportStore
from shared.data import envelope
from shared.data.durable_queue import DurableQueue


def _env(body: dict, msg_id: str = "s:report") -> envelope.Envelope:
    raw = json.dumps({"schema": 1, "type": "report", "id": msg_id, "device_id": "d", "session": "s",
                      "sent_at": 1.0, "body": body}).encode()
    return envelope.parse(raw)


@pytest.mark.parametrize(("payload", "reason"), [
    (b"\xff\xfe", "not_json"), (b"[1]", "not_object"), (b'{"schema": "1"}', "wrong_schema"),
    (b'{"schema": 1, "type": "frame"}', "wrong_type"), (b'{"schema": 1, "type": "totals", "id": ""}', "bad_id"),
    (b'{"schema": 1, "type": "totals", "id": "a", "body": []}', "bad_body"),
])
def test_parse_rejects_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(envelope.InvalidPayload) as err:
        envelope.parse(payload)
    assert err.value.reason == reason


@settings(max_examples=25, deadline=None)
@given(st.text(min_size=1, max_size=400), st.integers(min_value=2, max_value=400))
def test_split_round_trips_and_respects_the_limit(text: str, repeat: int) -> None:
    env = _env({"rows": [text] * repeat, "quote": '"\\' * repeat})
    limit = 4096
    parts = envelope.split(env, limit, max_parts=10_000)
    assert all(len(p) <= limit for p in parts)
    if len(env.raw) <= limit:
        assert parts == [env.raw]
    else:
        docs = [json.loads(p) for p in parts]
        random.shuffle(docs)
        assert envelope.join_parts(docs)["body"] == env.doc["body"]
        assert {d["id"] for d in docs} == {"s:report"}


def test_split_rejects_what_too_many_parts_cannot_hold() -> None:
    env = _env({"blob": "x" * 50_000})
    with pytest.raises(envelope.InvalidPayload) as err:
        envelope.split(env, 4096, max_parts=3)
    assert err.value.reason == "too_large"


def test_topic_limits() -> None:
    envelope.check_topic("engagement/jetson-01/report")
    for bad in ["a/" * 8 + "b", "x" * 257, "$aws/things", "a/+/b"]:
        with pytest.raises(ValueError):
            envelope.check_topic(bad)


def test_queue_survives_reopen_and_remembers_forwarded_ids(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    q = DurableQueue(path)
    assert q.enqueue("a", "report", "t/a", [b"1", b"2"])
    assert q.enqueue("b", "totals", "t/b", [b"3"])
    assert not q.enqueue("a", "report", "t/a", [b"1", b"2"])  # already queued
    q.close()
    q = DurableQueue(path)  # a restart
    rows = q.due(10, set())
    assert [(r.msg_id, r.part, r.payload) for r in rows] == [("a", 0, b"1"), ("a", 1, b"2"), ("b", 0, b"3")]
    q.done(rows[0].seq)
    assert not q.enqueue("a", "report", "t/a", [b"1", b"2"])  # part 2 still queued
    q.done(rows[1].seq)
    assert not q.enqueue("a", "report", "t/a", [b"1", b"2"])  # forwarded: a redelivery is ignored
    q.retry_later(rows[2].seq, 60)
    assert q.due(10, set()) == [] and q.depth() == 1 and q.oldest_age() >= 0
    q.dead_letter("t", "not_json", "x", b"junk")
    assert q.db.execute("SELECT reason, payload FROM dead_letter").fetchall() == [("not_json", b"junk")]
    assert q.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    q.close()


def test_report_store_dedupes_and_reassembles(tmp_path: Path) -> None:
    store = ReportStore(DirectoryStore(tmp_path), "p")
    small = _env({"a": 1}, "s:totals:1").raw
    assert store.handle(small) == "stored"
    assert store.handle(small) == "duplicate"
    assert store.handle(b"{nope") == "invalid"
    big = _env({"rows": ["r" * 100] * 200})
    parts = envelope.split(big, 4096)
    order = list(reversed(parts))
    outcomes = [store.handle(p) for p in order[:-1]]
    assert set(outcomes) == {"part"}
    assert store.handle(order[0]) == "duplicate"  # a part delivered twice
    # A new store over the same directory (a consumer restart) still finds the earlier parts.
    store = ReportStore(DirectoryStore(tmp_path), "p")
    assert store.handle(order[-1]) == "stored"
    assert store.handle(order[-1]) == "duplicate"
    saved = json.loads((tmp_path / "p" / "d" / "report" / "s" / "s:report.json").read_text())
    assert saved["body"] == big.doc["body"] and "parts" not in saved
    assert not list((tmp_path / "p" / "_parts").rglob("*.json"))
