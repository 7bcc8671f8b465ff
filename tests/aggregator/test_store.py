"""The Redis schema on the real Redis: counts, idempotency, consistency, timeline order."""

from __future__ import annotations

import random
import time
from collections import Counter

from shared.data.totals import FrameRecord
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


def test_one_stream_without_expected_streams_ends_at_its_first_eos(store):
    store.record_frame(_frame("one", 0, [(1, 0)]))
    assert store.end_stream("one", "cam0", 1_000_010.0, "end_of_file", [], "c1", "a.mp4") == (True, [], True)
    assert store.session_meta("one")["ended"] == 1_000_010.0
    [stream] = store.streams("one")
    assert {k: v for k, v in stream.items() if k != "totals"} == {
        "stream": "cam0", "source": "a.mp4", "started": 1_000_000.0, "ended": 1_000_010.0, "end_reason": "end_of_file"}
    assert stream["totals"]["predictions"] == 1
    assert "one" in store.reports_pending()


def test_the_session_ends_when_every_expected_and_seen_stream_has_ended(store):
    rec = _frame("two", 0, [(1, 0)])
    store.record_frame(rec)
    store.record_frame(FrameRecord("two", "c1", "screen", 0, 1_000_001.0, None, 1, rec.predictions, MODEL))
    expected = ["cam0", "cam1"]  # "screen" is not listed but was seen: it must end too
    assert store.end_stream("two", "cam1", 1_000_005.0, "gave_up", expected) == (False, ["cam0", "screen"], True)
    assert store.end_stream("two", "cam0", 1_000_006.0, "end_of_file", expected) == (False, ["screen"], True)
    assert store.session_meta("two")["ended"] is None and "two" not in store.reports_pending()
    # What the web reads twice a second to say a camera is gone: the ended streams alone, as `streams` has them.
    assert store.stream_ends("two") == {"cam1": (1_000_005.0, "gave_up"), "cam0": (1_000_006.0, "end_of_file")}
    assert store.stream_ends("two") == {s["stream"]: (s["ended"], s["end_reason"])
                                        for s in store.streams("two") if s["ended"] is not None}
    assert store.stream_ends("nobody") == {}
    # A repeated eos of an ended stream keeps its first end and does not end the session.
    assert store.end_stream("two", "cam1", 1_000_009.0, "stopped", expected) == (False, ["screen"], False)
    assert store.end_stream("two", "screen", 1_000_007.0, "stopped", expected) == (True, [], True)
    meta = store.session_meta("two")
    assert meta["ended"] == 1_000_007.0 and meta["end_reason"] == "stopped"
    by_id = {s["stream"]: s for s in store.streams("two")}
    assert by_id["cam1"]["ended"] == 1_000_005.0 and by_id["cam1"]["end_reason"] == "gave_up"
    assert by_id["cam1"]["started"] is None  # expected, never sent a frame
    assert by_id["screen"]["started"] == 1_000_001.0
    # The session's end is idempotent too.
    assert store.end_stream("two", "cam0", 1_000_099.0, "stopped", expected) == (True, [], False)
    assert store.session_meta("two")["ended"] == 1_000_007.0


def test_end_session_closes_the_streams_still_open(store):
    store.record_frame(_frame("cut", 0, [(1, 0)]))
    store.end_stream("cut", "cam1", 1_000_002.0, "gave_up", ["cam0", "cam1"])
    store.end_session("cut", 1_000_003.0, "interrupted")
    by_id = {s["stream"]: s for s in store.streams("cut")}
    assert by_id["cam0"]["end_reason"] == "interrupted" and by_id["cam1"]["end_reason"] == "gave_up"


def test_students_of_two_streams_with_the_same_id_are_counted_apart(store):
    preds = [{"student": 1, "level": 0, "probs": [0.25] * 4}, {"student": 2, "level": 3, "probs": [0.25] * 4}]
    _, one = store.record_frame(FrameRecord("ab", "c1", "cam0", 0, 1_000_000.0, None, 2, preds, MODEL))
    assert "streams" not in one  # one stream so far: no per-stream noise
    _, both = store.record_frame(FrameRecord("ab", "c1", "cam1", 0, 1_000_000.5, None, 1, preds[:1], MODEL))
    store.record_frame(FrameRecord("ab", "c1", "cam1", 1, 1_000_001.0, None, 1,
                                   [{"student": 1, "level": 2, "probs": [0.25] * 4}], MODEL))
    assert both["frames"] == 2 and both["streams"]["cam0"]["predictions"] == 2
    assert both["streams"]["cam1"]["levels"] == {"0": 1, "1": 0, "2": 0, "3": 0}
    rows = {(s["stream"], s["student"]): s for s in store.students("ab")}
    assert sorted(rows) == [("cam0", 1), ("cam0", 2), ("cam1", 1)]
    assert rows[("cam0", 1)]["predictions"] == 1 and rows[("cam1", 1)]["predictions"] == 2
    assert rows[("cam1", 1)]["levels"] == {"0": 1, "1": 0, "2": 1, "3": 0}
    by_id = {s["stream"]: s for s in store.streams("ab")}
    assert by_id["cam0"]["totals"]["predictions"] == 2 and by_id["cam1"]["totals"]["frames"] == 2
    assert by_id["cam1"]["started"] == 1_000_000.5
    session = store.session_totals("ab")
    assert session["predictions"] == sum(s["totals"]["predictions"] for s in by_id.values()) == 4


def test_a_session_written_before_streams_still_reads(store):
    """Bare ids in the students set (an older aggregator's keys): they belong to the meta's stream."""
    store.record_frame(_frame("old", 0, [(4, 1)]))
    s = store._s("old")
    store.r.rename(f"{s}:student:cam0/4", f"{s}:student:4")
    store.r.delete(f"{s}:students")
    store.r.sadd(f"{s}:students", "4")
    [row] = store.students("old")
    assert (row["stream"], row["student"], row["predictions"]) == ("cam0", 4, 1)


def test_a_caller_holding_every_streams_totals_gets_only_the_frames_stream_back(store):
    preds = [{"student": 1, "level": 2, "probs": [0.25] * 4}]
    store.record_frame(FrameRecord("k", "c1", "cam0", 0, 1_000_000.0, None, 1, preds, MODEL))
    _, first = store.record_frame(FrameRecord("k", "c1", "cam1", 0, 1_000_000.0, None, 1, preds, MODEL),
                                  known_streams=1)
    assert sorted(first["streams"]) == ["cam0", "cam1"]  # it held one of two: every stream comes back
    _, then = store.record_frame(FrameRecord("k", "c1", "cam1", 1, 1_000_001.0, None, 1, preds, MODEL),
                                 known_streams=2)
    assert list(then["streams"]) == ["cam1"] and then["streams"]["cam1"]["levels"]["2"] == 2


def test_the_totals_a_write_answers_are_the_totals_redis_holds_whatever_the_streams_are_called(store):
    """The script answers in one JSON string (cjson): stream ids with quotes, slashes, backslashes and
    accents, a multi-task model's states, and the one-stream answer (cjson's empty list is {}) read back alike."""
    names = ['salle "B"/2', "caméra\\1"]
    heads = {"boredom": [0.1, 0.7, 0.1, 0.1], "engagement": [0.1, 0.1, 0.1, 0.7]}
    preds = [{"student": 1, "level": 3, "probs": [0.1, 0.1, 0.1, 0.7], "heads": heads}]
    counted, alone = store.record_frame(FrameRecord("q", "c1", names[0], 0, 1_000_000.0, None, 1, preds, MODEL))
    assert counted and "streams" not in alone and alone == store.session_totals("q")
    counted, both = store.record_frame(FrameRecord("q", "c1", names[1], 0, 1_000_000.5, 0.5, 2, preds, MODEL))
    streams = {st["stream"]: st["totals"] for st in store.streams("q")}
    assert counted and both == {**store.session_totals("q"), "streams": streams} and sorted(streams) == sorted(names)
    assert both["states"]["engagement"]["3"] == 2
    counted, again = store.record_frame(FrameRecord("q", "c1", names[1], 0, 1_000_000.5, 0.5, 2, preds, MODEL))
    assert not counted and again == both


def test_a_stream_that_ended_before_its_first_frame_does_not_break_the_other_streams_writes(store):
    """A camera that gave up at start (no frame, only its eos) is a stream without totals: its empty
    hash comes back through cjson as {}, and every frame of the class's other cameras must still count."""
    preds = [{"student": 1, "level": 1, "probs": [0.25] * 4}]
    store.end_stream("late", "cam1", 1_000_000.0, "source_failed", ["cam0", "cam1"])
    for seq in range(3):
        counted, totals = store.record_frame(FrameRecord("late", "c1", "cam0", seq, 1_000_001.0 + seq, None, 1,
                                                         preds, MODEL))
        assert counted and totals["frames"] == seq + 1
    assert totals["streams"]["cam1"]["frames"] == 0 and totals["streams"]["cam0"]["frames"] == 3
    assert totals == {**store.session_totals("late"),
                      "streams": {st["stream"]: st["totals"] for st in store.streams("late")}}
