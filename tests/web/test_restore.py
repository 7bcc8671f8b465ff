"""A web started mid-class rebuilds the live page from Redis's timeline (services/web/restore.py): the rows it
decodes, without each entry's signals and boxes, make the state the whole entries made, in the same order."""

from __future__ import annotations

import random

import pytest

from services.web.live import LiveRow, LiveState
from services.web.restore import live_rows
from shared.data.totals import FrameRecord, Store
from tests.aggregator.harness import MODEL

T0 = 1_700_000_000.0


def _class_under_way(store: Store, session: str) -> None:
    """Two cameras whose frames share capture times (ties sorted by seq, then student), with signals and boxes."""
    rng = random.Random(7)
    for stream in ("cam1", "cam0"):
        for seq in range(40):
            preds = [{"student": s, "level": rng.randrange(4), "probs": [rng.random() for _ in range(4)],
                      "box": [1, 2, 3, 4], "conf": 0.9, "signals": {"yaw": rng.uniform(-30, 30), "reason": "yaw"}}
                     for s in rng.sample(range(1, 7), rng.randrange(1, 6))]
            store.record_frame(FrameRecord(session, "c1", stream, seq, T0 + (seq // 2) * 0.5, seq * 0.25, len(preds),
                                           preds, MODEL))


def test_the_live_page_from_the_rows_is_the_one_whole_entries_made(store):
    _class_under_way(store, "w-restore")
    whole = sorted(store.timeline("w-restore"), key=lambda e: e["t_capture"])  # as the web read it before
    meta, totals = {"streams": ["cam0", "cam1"]}, store.session_totals("w-restore")
    before, now = LiveState(class_level_only=False), LiveState(class_level_only=False)
    before.load("w-restore", meta, totals, [LiveRow(e["stream"], e["seq"], e["student"], e["level"], e["probs"],
                                                    e["t_capture"]) for e in whole])
    rows = list(live_rows(store.timeline_json("w-restore"), chunk=7))
    assert [(r.stream, r.seq, r.student) for r in rows] == [(e["stream"], e["seq"], e["student"]) for e in whole]
    now.load("w-restore", meta, totals, rows)
    assert now.snapshot() == before.snapshot() and now.alerts() == before.alerts()
    assert len(now.snapshot()["students"]) == 12 and now.class_line == before.class_line


def test_no_timeline_yet_is_an_empty_class():
    assert list(live_rows([])) == []


def test_redis_failing_while_the_timeline_is_read_fails_the_call_not_the_pages_state():
    """The rows are read before LiveState.load takes its lock and resets the state: a Redis gone mid-read leaves
    the live page as it was."""
    import redis  # noqa: PLC0415

    def broken():  # noqa: ANN202
        yield '{"stream":"cam0","seq":0,"student":1,"level":2,"probs":[0.1,0.2,0.6,0.1],"t_capture":1.0}'
        raise redis.ConnectionError("gone")

    with pytest.raises(redis.ConnectionError):
        live_rows(broken())  # not a generator that would fail at its first row, inside LiveState.load
