"""The Redis schema on the real Redis: counts, idempotency, consistency, timeline order."""

from __future__ import annotations

import random
import time
from collections import Counter

from shared.totals import FrameRecord
from tests.aggregator.harness import MODEL


def _frame(session: str, seq: int, students: list[tuple[int, int]], class_id: str = "c1",
           t0: float = 1_000_000.0) -> FrameRecord:
    preds = [{"student": s, "level": lv, "probs": [0.25] * 4} for s, lv in students]
    return FrameRecord(session, class_id, "cam0", seq, t0 + seq, seq * 0.5, len(preds), preds, MODEL)


def test_counts_exactly_what_was_recorded_and_duplicates_count_once(store):
    rng = random.Random(7)
    sent_levels: Counter[int] = Counter()
    per_student: Counter[int] = Counter()
    frames = [_frame("s1", seq, [(s, rng.randrange(4)) for s in rng.sample(range(5), rng.randrange(4))])
              for seq in range(40)]
    for f in frames:
        counted, _ = store.record_frame(f)
        assert counted
        for p in f.predictions:
            sent_levels[p["level"]] += 1
            per_student[p["student"]] += 1
    # Every frame again, shuffled (a redelivery, a restarted aggregator's backlog): nothing changes.
    for f in rng.sample(frames, len(frames)):
        counted, totals = store.record_frame(f)
        assert not counted
    totals = store.session_totals("s1")
    assert totals["frames"] == 40
    assert totals["predictions"] == sum(sent_levels.values())
    assert {int(k): v for k, v in totals["levels"].items() if v} == dict(sent_levels)
    assert totals["frames_without_faces"] == sum(1 for f in frames if f.faces == 0)
    students = store.students("s1")
    assert {s["student"]: s["predictions"] for s in students} == dict(per_student)
    # Per student levels add up to the session's levels.
    for level in "0123":
        assert sum(s["levels"][level] for s in students) == totals["levels"][level]
    assert len(store.timeline("s1")) == totals["predictions"]


def test_class_totals_span_sessions(store):
    store.record_frame(_frame("a", 0, [(1, 0), (2, 3)], class_id="math"))
    store.record_frame(_frame("b", 0, [(1, 2)], class_id="math"))
    store.record_frame(_frame("c", 0, [(1, 1)], class_id="art"))
    math = store.class_totals("math")
    a, b = store.session_totals("a"), store.session_totals("b")
    assert math["sessions"] == 2
    assert math["predictions"] == a["predictions"] + b["predictions"] == 3
    assert math["levels"] == {k: a["levels"][k] + b["levels"][k] for k in "0123"}


def test_timeline_is_ordered_by_time_with_first_and_last_seen(store):
    # Written out of order (a backlog catching up after a live frame): read back in time order.
    for seq in [3, 0, 2, 1, 4]:
        store.record_frame(_frame("t", seq, [(9, seq % 4)]))
    timeline = store.timeline("t")
    assert [e["seq"] for e in timeline] == [0, 1, 2, 3, 4]
    assert all(a["t_capture"] < b["t_capture"] for a, b in zip(timeline, timeline[1:], strict=False))
    assert [e["t_media"] for e in timeline] == [0.0, 0.5, 1.0, 1.5, 2.0]
    [student] = store.students("t")
    assert student["first_seen"] == timeline[0]["t_capture"]
    assert student["last_seen"] == timeline[-1]["t_capture"]
    assert student["first_media"] == 0.0 and student["last_media"] == 2.0


def test_session_meta_and_end_is_idempotent(store):
    store.record_frame(_frame("m", 0, [(1, 0)]))
    store.end_session("m", time.time(), "end_of_file", "c1", "cam0")
    first = store.session_meta("m")["ended"]
    store.end_session("m", time.time() + 5, "stopped")
    meta = store.session_meta("m")
    assert meta["ended"] == first and meta["end_reason"] == "end_of_file"
    assert meta["model"]["name"] == MODEL["name"] and meta["model"]["baseline"] is True
    assert meta["model"]["engine"] == "litert-facemesh" and meta["model"]["device"] == "cpu"  # into the report
    assert meta["started"] == 1_000_000.0
    assert meta["class"] == "c1"
