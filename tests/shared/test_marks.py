"""The teacher's marks on the real Redis: validation, durability, agreement."""

from __future__ import annotations

import json
import math
import os
import uuid

import pytest
import redis

from shared.data.marks import Mark, MarkError, MarkStore, agreement, validate_mark
from shared.data.report_doc import TimelineEntry
from shared.data.timeline_columns import TimelineColumns
from shared.data.totals import FrameRecord, Store

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def prefix():
    p = f"test-marks-{uuid.uuid4().hex[:8]}"
    yield p
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{p}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def marks(prefix) -> MarkStore:
    return MarkStore(redis.Redis.from_url(REDIS_URL, decode_responses=True), prefix=prefix)


def _payload(**over) -> dict:
    base = {"session": "s1", "student": 3, "t": 1_700_000_000.5, "level_given": 0, "level_predicted": 1,
            "signals": {"yaw": -12.5, "pitch": 18.0, "eye_openness": 0.3, "reason": "pitch",
                        "now": {"yaw": 1.0}, "gaze_x": None},
            "source": "live"}
    return {**base, **over}


def test_validate_keeps_numbers_only_and_fills_defaults():
    m = validate_mark(_payload())
    assert m.student == "3" and m.session == "s1" and m.level_given == 0 and m.level_predicted == 1
    assert m.signals == {"yaw": -12.5, "pitch": 18.0, "eye_openness": 0.3}  # text, nested, null dropped
    assert m.source == "live" and m.created_at > 1_700_000_000
    assert validate_mark(_payload(level_predicted=None, source="session")).level_predicted is None


@pytest.mark.parametrize(("over", "field"), [
    ({"session": ""}, "session"),
    ({"session": None}, "session"),
    ({"student": [1]}, "student"),
    ({"student": True}, "student"),
    ({"t": "noon"}, "t"),
    ({"t": math.nan}, "t"),
    ({"t": -5}, "t"),
    ({"level_given": 4}, "level_given"),
    ({"level_given": "2"}, "level_given"),
    ({"level_given": True}, "level_given"),
    ({"level_given": 1.5}, "level_given"),
    ({"level_predicted": -1}, "level_predicted"),
    ({"signals": "yaw=3"}, "signals"),
    ({"signals": {f"s{i}": 1.0 for i in range(65)}}, "signals"),
    ({"source": "phone"}, "source"),
    ({"created_at": "yesterday"}, "created_at"),
    ({"stream": 3}, "stream"),
    ({"stream": "x" * 201}, "stream"),
])
def test_malformed_marks_name_the_field(over, field):
    with pytest.raises(MarkError) as err:
        validate_mark(_payload(**over))
    assert err.value.field == field
    assert field in str(err.value)


def test_missing_field_and_non_object_body():
    body = _payload()
    del body["level_given"]
    with pytest.raises(MarkError) as err:
        validate_mark(body)
    assert err.value.field == "level_given"
    with pytest.raises(MarkError) as err:
        validate_mark(["not", "an", "object"])  # type: ignore[arg-type]  # the wrong type on purpose
    assert err.value.field == "body"


def test_add_and_read_back_by_session_in_time_order(marks):
    later = validate_mark(_payload(t=1_700_000_010.0, level_given=2))
    earlier = validate_mark(_payload(t=1_700_000_001.0, level_given=1, student="7"))
    other = validate_mark(_payload(session="s2"))
    ids = [marks.add(m) for m in (later, earlier, other)]
    assert len(set(ids)) == 3 and later.id == ids[0]
    got = marks.for_session("s1")
    assert [(m.student, m.t, m.level_given) for m in got] == [("7", 1_700_000_001.0, 1), ("3", 1_700_000_010.0, 2)]
    assert got[1] == later  # every field, signals and created_at included, survives the round trip
    assert marks.for_session("nobody") == []
    assert {m.id for m in marks.all()} == set(ids)
    assert marks.sessions() == ["s1", "s2"]


def test_marks_survive_deleting_the_sessions_totals_and_have_no_expiry(marks, prefix):
    totals = Store(marks.r, prefix=prefix)
    totals.record_frame(FrameRecord("s1", "c", "cam0", 0, 1_700_000_000.0, None, 1,
                                    [{"student": 3, "level": 1, "probs": [0.1, 0.7, 0.1, 0.1]}]))
    marks.add(validate_mark(_payload()))
    totals.delete_session("s1")  # a retention job dropping the session's totals
    assert totals.session_totals("s1")["frames"] == 0
    assert len(marks.for_session("s1")) == 1
    for key in marks.r.scan_iter(match=f"{prefix}:marks:*"):
        assert marks.r.ttl(key) == -1, key  # -1: no expiry set


def test_a_bytes_client_reads_the_same_marks(marks, prefix):
    marks.add(validate_mark(_payload()))
    raw = MarkStore(redis.Redis.from_url(REDIS_URL), prefix=prefix)  # no decode_responses
    assert [m.to_dict() for m in raw.for_session("s1")] == [m.to_dict() for m in marks.for_session("s1")]


def _mark(given: int, predicted: int | None) -> Mark:
    return Mark("s", "1", 1.0, given, predicted, {}, 1.0, "live")


def test_agreement_rate_and_confusion():
    result = agreement([_mark(0, 0), _mark(0, 1), _mark(2, 2), _mark(3, 1), _mark(1, None)])
    assert result["marks"] == 4 and result["agreed"] == 2 and result["rate"] == 0.5
    assert result["without_prediction"] == 1
    assert result["confusion"][0] == [1, 1, 0, 0] and result["confusion"][3] == [0, 1, 0, 0]
    assert agreement([])["rate"] is None


def test_a_reader_follows_new_marks_as_they_come(marks):
    first, pos = marks.new_marks("s1")
    assert first == []
    marks.add(validate_mark(_payload(level_given=0)))
    marks.add(validate_mark(_payload(level_given=2)))
    got, pos = marks.new_marks("s1", pos)
    assert [m.level_given for m in got] == [0, 2]
    assert marks.new_marks("s1", pos) == ([], pos)
    marks.add(validate_mark(_payload(level_given=3)))
    got, _ = marks.new_marks("s1", pos)
    assert [m.level_given for m in got] == [3]


def _entry(student: int, t_capture: float, t_media: float, stream: str = "cam0") -> TimelineEntry:
    """A report's timeline entry: what report_section reads of it is its student, stream and times."""
    return TimelineEntry(stream=stream, seq=0, student=student, level=0, probs=[1.0, 0.0, 0.0, 0.0],
                         t_capture=t_capture, t_media=t_media)


def test_report_section_for_a_page_that_adds_marks_to_a_written_report():
    from shared.data.marks import report_section  # noqa: PLC0415

    timeline = [_entry(3, 100.0, 0.0), _entry(3, 101.0, 0.5)]
    marks = [Mark("s", "3", 100.9, 1, 1, {}, 1.0, "session"), Mark("s", "9", 100.0, 0, 2, {}, 1.0, "session")]
    section = report_section(marks, timeline=TimelineColumns.of(timeline))
    assert [(m["student"], m["t_media"]) for m in section["marks"]] == [("3", 0.5), ("9", None)]
    assert section["agreement"]["agreed"] == 1
    assert report_section(marks, class_level_only=True, timeline=TimelineColumns.of(timeline))["marks"] == []


def test_marks_of_two_streams_join_their_own_students_predictions(marks):
    """cam0 #1 and cam1 #1 are two students: each mark finds its own stream's prediction."""
    from shared.data.marks import report_section  # noqa: PLC0415

    timeline = [_entry(1, 100.0, 0.0, "cam0"), _entry(1, 100.1, 7.0, "cam1")]
    for stream in ("cam1", "cam0"):
        marks.add(validate_mark({"session": "two", "stream": stream, "student": 1, "t": 100.05, "level_given": 0}))
    stored = marks.for_session("two")
    assert sorted(m.stream for m in stored) == ["cam0", "cam1"]
    section = report_section(stored, timeline=TimelineColumns.of(timeline))
    assert sorted((m["stream"], m["t_media"]) for m in section["marks"]) == [("cam0", 0.0), ("cam1", 7.0)]
    assert validate_mark(_payload()).stream == ""  # a one-stream class's mark needs none


def test_marks_read_back_from_a_report_and_merged_with_redis_once(marks):
    """Issue 21: a report carries its session's marks; read back and merged with Redis's, each
    mark counts once, whatever id each Redis gave it (a private Redis starts again at 1)."""
    from shared.data.marks import from_report, merge, report_section
    from shared.data.report_doc import from_dict
    from tests.support.reports import report_dict

    first = validate_mark(_payload(session="sr", student=1, t=1_700_000_001.0, created_at=1_700_000_010.0))
    second = validate_mark(_payload(session="sr", student=2, t=1_700_000_002.0, level_given=3,
                                    created_at=1_700_000_011.0))
    marks.add(first)
    marks.add(second)
    timeline = [_entry(1, 1_700_000_001.2, 4.5, "cam0")]
    report = report_dict(session="sr", **report_section([first, second], timeline=TimelineColumns.of(timeline)))
    report = json.loads(json.dumps(report))  # as the file holds it
    report["marks"].append({**report["marks"][0], "student": "5", "level_given": 9})  # hand-edited, no mark: skipped
    back = from_report(from_dict(report))
    assert [(m.student, m.level_given, m.id) for m in back] == [("1", 0, first.id), ("2", 3, second.id)]
    assert back[0].signals == first.signals
    in_redis = marks.for_session("sr")
    assert len(merge(in_redis, back)) == 2 and len(merge(back, back)) == 2
    # A mark only the report has (made on a Redis that is gone) joins those of this Redis.
    gone = {**report["marks"][0], "id": "1", "created_at": 1_700_000_020.0}
    merged = merge(in_redis, from_report(from_dict(report_dict(session="sr", marks=[gone]))))
    assert [m.created_at for m in merged] == [1_700_000_010.0, 1_700_000_020.0, 1_700_000_011.0]
