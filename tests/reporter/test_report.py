"""Report building from store data read back from the real Redis: totals, episodes, privacy."""

from __future__ import annotations

import json

import pytest

from services.reporter.report import BASELINE_NOTE, build_report, episodes, mqtt_body, render_text
from shared.totals import FrameRecord, Store
from tests.aggregator.harness import MODEL

# Student 1 is engaged, then bored for 3 frames (seq 3-5), engaged, bored again at the end;
# student 2 is never bored; seq 2 has no face.
LEVELS_1 = [0, 0, None, 2, 3, 2, 1, 0, 2, 2]
LEVELS_2 = [1, 1, None, 0, 0, 1, 1, 1, 0, 0]


def _fill(store: Store, session: str) -> None:
    for seq, (a, b) in enumerate(zip(LEVELS_1, LEVELS_2, strict=True)):
        preds = [{"student": s, "level": lv, "probs": [0.25] * 4} for s, lv in ((1, a), (2, b)) if lv is not None]
        store.record_frame(FrameRecord(session, "math-7", "cam0", seq, 1_700_000_000.0 + seq, seq * 0.5,
                                       len(preds), preds, MODEL))
    store.end_session(session, 1_700_000_100.0, "end_of_file")


def test_report_totals_students_and_episodes(store):
    _fill(store, "r1")
    report = build_report(store.load_session("r1"))
    sent = [lv for lv in LEVELS_1 + LEVELS_2 if lv is not None]
    assert report["totals"]["frames"] == 10
    assert report["totals"]["frames_without_faces"] == 1
    assert report["totals"]["predictions"] == len(sent)
    assert report["totals"]["levels"] == {str(i): sent.count(i) for i in range(4)}
    assert sum(report["totals"]["percent"].values()) == pytest.approx(100.0, abs=0.2)
    assert [s["student"] for s in report["students"]] == [1, 2]
    assert report["model"]["baseline"] is True and report["note"] == BASELINE_NOTE
    assert report["model"]["engine"] == MODEL["engine"] and report["model"]["device"] == "cpu"
    # Two stretches at level >= 2 for student 1, none for student 2; media times say when.
    eps = report["episodes"]
    assert [(e["student"], e["start_media"], e["end_media"], e["max_level"]) for e in eps] == \
        [(1, 1.5, 2.5, 3), (1, 4.0, 4.5, 2)]
    assert len(report["timeline"]) == len(sent)
    text = render_text(report)
    assert "Total frames: 10" in text and "Frames with no face found: 1" in text
    assert f"2 bored: {sent.count(2)} ({100 * sent.count(2) / len(sent):.1f}%)" in text
    assert "id 1:" in text and "id 2:" in text
    assert "level >= 2 from 00:00:01.5 to 00:00:02.5" in text
    assert BASELINE_NOTE in text


def test_class_level_only_has_no_student_rows(store):
    _fill(store, "r2")
    report = build_report(store.load_session("r2"), class_level_only=True)
    assert report["students"] == [] and report["timeline"] == [] and report["episodes"] == []
    assert report["class_level_only"] is True
    # The class timeline still says when attention fell, without saying whose.
    assert [row["levels"][2] + row["levels"][3] for row in report["class_timeline"]] == \
        [int(a is not None and a >= 2) for a in LEVELS_1 if a is not None]
    assert all("student" not in row for row in report["class_timeline"])
    text = render_text(report)
    assert "id 1" not in text and "id 2" not in text
    assert "Total frames: 10" in text


def test_episodes_close_at_the_end_of_the_timeline():
    timeline = [{"student": 4, "level": lv, "t_capture": float(i), "t_media": None, "seq": i, "stream": "c"}
                for i, lv in enumerate([3, 3, 0, 2])]
    assert [(e["start"], e["end"], e["predictions"]) for e in episodes(timeline)] == [(0.0, 1.0, 2), (3.0, 3.0, 1)]


def test_mqtt_body_fits_the_cloud_limit_and_says_what_it_left_out(store):
    _fill(store, "r3")
    report = build_report(store.load_session("r3"))
    assert mqtt_body(report) == report  # a short session goes whole
    small = mqtt_body(report, limit=2000)
    assert len(json.dumps(small, separators=(",", ":"))) <= 2000
    assert small["timeline"] == [] and "timeline" in small["omitted"]
    assert small["totals"] == report["totals"] and small["students"] == report["students"]


def _marks(store: Store, session: str) -> list:
    from shared.marks import MarkStore, validate_mark  # noqa: PLC0415

    marks = MarkStore(store.r, prefix=store.prefix)
    # Student 1 at seq 4 (model said 3): the teacher agrees; at seq 0 (model 0) the teacher says 1.
    for seq, given, predicted in ((4, 3, 3), (0, 1, 0)):
        marks.add(validate_mark({"session": session, "student": 1, "t": 1_700_000_000.0 + seq + 0.1,
                                 "level_given": given, "level_predicted": predicted, "signals": {"yaw": 40.0}}))
    return marks.for_session(session)


def test_report_carries_the_teachers_marks_and_the_agreement(store):
    _fill(store, "m1")
    report = build_report(store.load_session("m1"), marks=_marks(store, "m1"))
    assert [(m["level_given"], m["level_predicted"], m["t_media"]) for m in report["marks"]] == \
        [(1, 0, 0.0), (3, 3, 2.0)]  # media time of the student's nearest prediction
    assert report["marks"][0]["signals"] == {"yaw": 40.0}
    agreement = report["agreement"]
    assert (agreement["marks"], agreement["agreed"], agreement["rate"]) == (2, 1, 0.5)
    assert agreement["confusion"][1][0] == 1 and agreement["confusion"][3][3] == 1
    text = render_text(report)
    assert "Teacher's marks: 2; the model agreed with 1 of the 2 it had a level for (50%)" in text
    assert "  00:00:00.0 id 1: teacher 1 slightly bored, model 0 engaged" in text
    assert "  00:00:02.0 id 1: teacher 3 checked out, model 3 checked out" in text


def test_class_level_report_keeps_the_agreement_but_not_the_marks(store):
    _fill(store, "m2")
    report = build_report(store.load_session("m2"), class_level_only=True, marks=_marks(store, "m2"))
    assert report["marks"] == [] and report["agreement"]["marks"] == 2
    assert "id 1" not in render_text(report)


def test_a_report_without_marks_says_nothing_of_them(store):
    _fill(store, "m3")
    report = build_report(store.load_session("m3"))
    assert report["marks"] == [] and report["agreement"]["rate"] is None
    assert "Teacher's marks" not in render_text(report)
