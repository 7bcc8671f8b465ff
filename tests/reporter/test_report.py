"""Report building from store data read back from the real Redis: totals, episodes, privacy."""

from __future__ import annotations

import json

import pytest

from services.reporter.report import BASELINE_NOTE, build_report, episodes, mqtt_body, render_text
from shared.data.report_doc import timeline_of, to_dict
from shared.data.timeline_columns import TimelineColumns
from shared.data.totals import FrameRecord, Store
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
    doc = to_dict(report)
    sent = [lv for lv in LEVELS_1 + LEVELS_2 if lv is not None]
    assert doc["totals"]["frames"] == 10
    assert doc["totals"]["frames_without_faces"] == 1
    assert doc["totals"]["predictions"] == len(sent)
    assert doc["totals"]["levels"] == {str(i): sent.count(i) for i in range(4)}
    assert sum(doc["totals"]["percent"].values()) == pytest.approx(100.0, abs=0.2)
    assert [s["student"] for s in doc["students"]] == [1, 2]
    assert doc["model"]["baseline"] is True and doc["note"] == BASELINE_NOTE
    assert doc["model"]["engine"] == MODEL["engine"] and doc["model"]["device"] == "cpu"
    # Two stretches at level >= 2 for student 1, none for student 2; media times say when.
    eps = doc["episodes"]
    assert [(e["student"], e["start_media"], e["end_media"], e["max_level"]) for e in eps] == \
        [(1, 1.5, 2.5, 3), (1, 4.0, 4.5, 2)]
    assert len(doc["timeline"]) == len(sent)
    text = render_text(report)
    assert "Total frames: 10" in text and "Frames with no face found: 1" in text
    assert f"2 bored: {sent.count(2)} ({100 * sent.count(2) / len(sent):.1f}%)" in text
    assert "id 1:" in text and "id 2:" in text
    assert "level >= 2 from 00:01.5 to 00:02.5" in text
    assert BASELINE_NOTE in text


def test_class_level_only_has_no_student_rows(store):
    _fill(store, "r2")
    report = build_report(store.load_session("r2"), class_level_only=True)
    doc = to_dict(report)
    assert doc["students"] == [] and doc["timeline"] == [] and doc["episodes"] == []
    assert doc["class_level_only"] is True
    # The class timeline still says when attention fell, without saying whose.
    assert [row["levels"][2] + row["levels"][3] for row in doc["class_timeline"]] == \
        [int(a is not None and a >= 2) for a in LEVELS_1 if a is not None]
    assert all("student" not in row for row in doc["class_timeline"])
    text = render_text(report)
    assert "id 1" not in text and "id 2" not in text
    assert "Total frames: 10" in text


def test_episodes_close_at_the_end_of_the_timeline():
    timeline = TimelineColumns.of(timeline_of([{"student": 4, "level": lv, "t_capture": float(i), "t_media": None,
                                                "seq": i, "stream": "c", "probs": [0.25] * 4}
                                               for i, lv in enumerate([3, 3, 0, 2])]))
    assert [(e["start"], e["end"], e["predictions"]) for e in episodes(timeline)] == [(0.0, 1.0, 2), (3.0, 3.0, 1)]


def test_mqtt_body_fits_the_cloud_limit_and_says_what_it_left_out(store):
    _fill(store, "r3")
    report = build_report(store.load_session("r3"))
    doc = to_dict(report)
    assert mqtt_body(report) == report  # a short session goes whole
    small = to_dict(mqtt_body(report, limit=2200))  # what is left: totals, students, set_aside, marks (~2.1 kB)
    assert len(json.dumps(small, separators=(",", ":"))) <= 2200
    assert small["timeline"] == [] and "timeline" in small["omitted"]
    assert small["totals"] == doc["totals"] and small["students"] == doc["students"]


@pytest.mark.parametrize("chunk", [1, 5, 18, 2000])
def test_the_mqtt_size_is_what_json_dumps_writes_for_any_text(store, monkeypatch, chunk):
    """The body's size is counted from the Structs (no dict copy of the report), the timeline a chunk at a
    time: the same count as the compact json.dumps the bridge sends, names beyond ASCII escaped as it
    escapes them; past a limit the count stops there."""
    import msgspec  # noqa: PLC0415

    from services.reporter import report as report_module  # noqa: PLC0415

    monkeypatch.setattr(report_module, "TIMELINE_CHUNK", chunk)
    _fill(store, "r-size")
    report = build_report(store.load_session("r-size"))
    for name in ("Ana", "Zoë Ñúñez", "李雷", "Ana 🙂", 'quote " and \\ back\n'):
        named = msgspec.structs.replace(report, students=[msgspec.structs.replace(s, name=name)
                                                         for s in report.students], note=name)
        named.timeline = [msgspec.structs.replace(e, signals={"reason": name}) for e in named.timeline]
        size = len(json.dumps(to_dict(named), separators=(",", ":")))
        assert report_module.compact_size(named) == size, name
        assert report_module.compact_size(named, limit=size - 1) > size - 1


def test_a_long_timeline_is_written_in_pieces_that_make_the_same_file(store, monkeypatch):
    """report_chunks lays the timeline out a few entries at a time: joined, the pieces are report_bytes's
    file byte for byte (its layout is json.dumps(indent=1)'s), names beyond ASCII and signals included."""
    import msgspec  # noqa: PLC0415

    from shared.data import report_doc  # noqa: PLC0415

    _fill(store, "r-chunks")
    report = build_report(store.load_session("r-chunks"))
    report = msgspec.structs.replace(report, note="Zoë 李雷 🙂", timeline=[
        msgspec.structs.replace(e, signals={"yaw": 1.5 * e.seq, "reason": "yaw", "gaze": [0.1, -0.2]})
        for e in report.timeline])
    assert len(report.timeline) == 18
    for chunk in (1, 4, 17, 18, 50):
        monkeypatch.setattr(report_doc, "TIMELINE_CHUNK", chunk)
        pieces = list(report_doc.report_chunks(report))
        assert b"".join(pieces) == report_doc.report_bytes(report), chunk
        assert (len(pieces) > 1) == (chunk < 18)
    assert json.loads(report_doc.report_bytes(report)) == json.loads(json.dumps(to_dict(report), indent=1))


def _fill_with_signals(store: Store, session: str) -> None:
    """Two cameras, two students each, the baseline's signals with their reasons, boxes, a frame without faces."""
    reasons = ["eyes", "yaw", None, "pitch"]
    for seq in range(12):
        for k, stream in enumerate(("cam1", "cam0")):
            preds = [] if (seq + k) % 5 == 4 else [
                {"student": s, "level": (seq // 2 + s + k) % 4, "probs": [0.1, 0.2, 0.3, 0.4], "box": [10, 20, 30, 40],
                 "conf": 0.9, "signals": {"yaw": 1.5 * seq, "reason": reasons[(seq + s) % 4], "now": 1}}
                for s in (1, 2)]
            store.record_frame(FrameRecord(session, "math-7", stream, seq, 1_700_000_000.0 + seq + 0.01 * k,
                                           None if k else seq * 0.5, len(preds), preds, MODEL))
    store.end_session(session, 1_700_000_100.0, "end_of_file")


@pytest.mark.parametrize("limit", [3000, 4_000_000])
def test_a_long_class_read_raw_makes_the_same_report_and_mqtt_body(store, monkeypatch, limit):
    """Past RAW_TIMELINE_AFTER predictions Store.load_session reads the timeline as each entry's JSON and the
    columns the report computes from (RawTimeline): the report file and the MQTT body are byte for byte the
    ones the Structs make, its episodes, class timeline, reasons and marks included."""
    from services.reporter.report import raw_timeline  # noqa: PLC0415
    from shared.data import report_doc  # noqa: PLC0415
    from shared.data import totals as totals_module  # noqa: PLC0415
    from shared.data.timeline_columns import RawTimeline  # noqa: PLC0415

    _fill_with_signals(store, "r-raw")
    marks = _marks(store, "r-raw")
    as_structs = build_report(store.load_session("r-raw"), generated_at=1.0, marks=marks)
    assert as_structs.episodes and len(as_structs.reasons) == 3 and as_structs.marks
    monkeypatch.setattr(totals_module, "RAW_TIMELINE_AFTER", 0)
    data = store.load_session("r-raw")
    raw = raw_timeline(data)
    assert isinstance(raw, RawTimeline) and len(raw) == len(as_structs.timeline) == 40
    from_raw = build_report(data, generated_at=1.0, marks=marks)
    assert from_raw.timeline == [] and raw.entries() == as_structs.timeline
    for chunk in (3, 2000):
        monkeypatch.setattr(report_doc, "TIMELINE_CHUNK", chunk)
        assert b"".join(report_doc.report_chunks(from_raw, raw.raw)) == report_doc.report_bytes(as_structs), chunk
    assert mqtt_body(from_raw, limit, raw) == mqtt_body(as_structs, limit)
    assert raw_timeline(data, class_level_only=True) is None


def test_the_last_prediction_counted_is_read_alone(store):
    assert store.last_prediction_time("r-none") is None
    _fill(store, "r-last")
    assert store.last_prediction_time("r-last") == 1_700_000_000.0 + len(LEVELS_1) - 1


def _marks(store: Store, session: str) -> list:
    from shared.data.marks import MarkStore, validate_mark  # noqa: PLC0415

    marks = MarkStore(store.r, prefix=store.prefix)
    # Student 1 at seq 4 (model said 3): the teacher agrees; at seq 0 (model 0) the teacher says 1.
    for seq, given, predicted in ((4, 3, 3), (0, 1, 0)):
        marks.add(validate_mark({"session": session, "student": 1, "t": 1_700_000_000.0 + seq + 0.1,
                                 "level_given": given, "level_predicted": predicted, "signals": {"yaw": 40.0}}))
    return marks.for_session(session)


def test_report_carries_the_teachers_marks_and_the_agreement(store):
    _fill(store, "m1")
    report = build_report(store.load_session("m1"), marks=_marks(store, "m1"))
    doc = to_dict(report)
    assert [(m["level_given"], m["level_predicted"], m["t_media"]) for m in doc["marks"]] == \
        [(1, 0, 0.0), (3, 3, 2.0)]  # media time of the student's nearest prediction
    assert doc["marks"][0]["signals"] == {"yaw": 40.0}
    agreement = doc["agreement"]
    assert (agreement["marks"], agreement["agreed"], agreement["rate"]) == (2, 1, 0.5)
    assert agreement["confusion"][1][0] == 1 and agreement["confusion"][3][3] == 1
    text = render_text(report)
    assert "Teacher's marks: 2; the model agreed with 1 of the 2 it had a level for (50%)" in text
    assert "  00:00.0 id 1: teacher 1 slightly bored, model 0 engaged" in text
    assert "  00:02.0 id 1: teacher 3 checked out, model 3 checked out" in text


def test_class_level_report_keeps_the_agreement_but_not_the_marks(store):
    _fill(store, "m2")
    report = build_report(store.load_session("m2"), class_level_only=True, marks=_marks(store, "m2"))
    doc = to_dict(report)
    assert doc["marks"] == [] and doc["agreement"]["marks"] == 2
    assert "id 1" not in render_text(report)


def test_a_report_without_marks_says_nothing_of_them(store):
    _fill(store, "m3")
    report = build_report(store.load_session("m3"))
    doc = to_dict(report)
    assert doc["marks"] == [] and doc["agreement"]["rate"] is None
    assert "Teacher's marks" not in render_text(report)


def _fill_two_streams(store: Store, session: str) -> None:
    """cam0 and cam1, each with its own students 1 and 2; cam1's student 1 is bored from seq 2,
    cam1 gives up after seq 3, cam0 goes on to seq 5."""
    for seq in range(6):
        store.record_frame(FrameRecord(session, "math-7", "cam0", seq, 1_700_000_000.0 + seq, seq * 0.5, 2,
                                       [{"student": 1, "level": 0, "probs": [0.25] * 4},
                                        {"student": 2, "level": 1, "probs": [0.25] * 4}], MODEL))
        if seq < 4:
            store.record_frame(FrameRecord(session, "math-7", "cam1", seq, 1_700_000_000.2 + seq, None, 1,
                                           [{"student": 1, "level": 3 if seq >= 2 else 0, "probs": [0.25] * 4}],
                                           MODEL))
    store.end_stream(session, "cam1", 1_700_000_004.0, "gave_up", ["cam0", "cam1"], "math-7", "rtsp://cam1")
    store.end_stream(session, "cam0", 1_700_000_006.0, "end_of_file", ["cam0", "cam1"], "math-7", "a.mp4")


def test_a_two_stream_report_has_a_section_per_stream_and_students_apart(store):
    from shared.data.report_export import report_csv, report_html  # noqa: PLC0415
    from shared.data.roster import with_names  # noqa: PLC0415

    _fill_two_streams(store, "two")
    report = build_report(store.load_session("two"))
    doc = to_dict(report)
    assert [(s["stream"], s["student"], s["predictions"]) for s in doc["students"]] == \
        [("cam0", 1, 6), ("cam0", 2, 6), ("cam1", 1, 4)]
    cam0, cam1 = doc["streams"]
    assert (cam0["stream"], cam0["source"], cam0["end_reason"], cam0["totals"]["frames"]) == \
        ("cam0", "a.mp4", "end_of_file", 6)
    assert (cam1["stream"], cam1["source"], cam1["end_reason"], cam1["ended"]) == \
        ("cam1", "rtsp://cam1", "gave_up", 1_700_000_004.0)
    assert cam1["totals"]["levels"] == {"0": 2, "1": 0, "2": 0, "3": 2} and cam1["totals"]["percent"]["3"] == 50.0
    assert [s["student"] for s in cam1["students"]] == [1] and len(cam0["students"]) == 2
    assert [(e["stream"], e["student"], e["predictions"]) for e in doc["episodes"]] == [("cam1", 1, 2)]
    assert cam1["episodes"] == doc["episodes"] and cam0["episodes"] == []
    assert {e["stream"] for e in doc["timeline"]} == {"cam0", "cam1"}
    text = render_text(report)
    assert "Streams: cam0, cam1" in text
    assert "Stream cam1 (rtsp://cam1): started" in text and "(gave_up)" in text
    assert "cam0 #1: 6 predictions" in text and "cam1 #1: 4 predictions" in text
    assert "id 1" not in text
    # Roster names (stream, student) win in the files on the box; MQTT gets ids only.
    named = with_names(report, {("cam1", 1): "Ana", ("", 2): "Ben"})
    assert [s.get("name") for s in to_dict(named)["streams"][1]["students"]] == ["Ana"]
    assert [s.get("name") for s in to_dict(named)["students"]] == [None, "Ben", "Ana"]
    assert "cam1 #1 (Ana): 4 predictions" in render_text(named)
    assert "Ana" not in json.dumps(to_dict(mqtt_body(report))) and "Ben" not in json.dumps(to_dict(mqtt_body(report)))
    page = report_html(named)
    assert "<h2>Streams</h2>" in page and "rtsp://cam1" in page and "Ana (cam1 #1)" in page
    assert "Ben (cam0 #2)" in page and "cam0 #1" in page
    rows = report_csv(report).splitlines()
    assert rows[0].split(",")[3:5] == ["stream", "student"]
    assert {tuple(r.split(",")[3:5]) for r in rows[1:]} == {("cam0", "1"), ("cam0", "2"), ("cam1", "1")}


def test_a_two_stream_reports_four_formats_say_one_thing(store):
    """Issue 21: each stream's counts, its students (named "cam1 #1") and its live source's
    episodes (capture offsets, no media time) agree across the text, JSON, CSV and HTML."""
    from tests.support.report_checks import assert_reports_agree  # noqa: PLC0415

    _fill_two_streams(store, "r-two-agree")
    report = build_report(store.load_session("r-two-agree"))
    doc = to_dict(report)
    assert len(doc["streams"]) == 2 and doc["episodes"]
    assert_reports_agree(report, render_text(report))


def test_a_two_stream_class_level_report_has_per_stream_totals_only(store):
    _fill_two_streams(store, "two-c")
    report = build_report(store.load_session("two-c"), class_level_only=True)
    doc = to_dict(report)
    assert doc["students"] == [] and doc["episodes"] == []
    assert [(s["stream"], s["totals"]["predictions"], s["students"], s["episodes"]) for s in doc["streams"]] == \
        [("cam0", 12, [], []), ("cam1", 4, [], [])]
    text = render_text(report)
    assert "Stream cam0 (a.mp4)" in text and "#1" not in text


def test_a_one_stream_report_stays_as_it_was(store):
    _fill(store, "one")
    report = build_report(store.load_session("one"))
    doc = to_dict(report)
    [only] = doc["streams"]  # the JSON always has the section; text and page show none
    assert only["stream"] == "cam0" and only["totals"]["frames"] == 10
    text = render_text(report)
    assert "Stream: cam0" in text and "Stream cam0" not in text and "#" not in text


def test_faces_the_mesh_could_not_read_are_counted_apart_from_frames_without_a_face(store):
    """Issue 21: the text said "Frames with no face found: 0" beside predictions whose reason was
    no_face (a face found, its mesh unsure, counted at level 3); every format now counts them."""
    from shared.data.report_export import report_csv, report_html

    reasons = ["yaw", "no_face", "no_face", None, "pitch", "no_face"]
    for seq, reason in enumerate(reasons):
        preds = [] if reason is None else [{"student": 1, "level": 3 if reason == "no_face" else 1,
                                            "probs": [0.25] * 4, "signals": {"reason": reason, "score": 1.0}}]
        store.record_frame(FrameRecord("r-unread", "math-7", "cam0", seq, 1_700_000_000.0 + seq, seq * 0.5,
                                       len(preds), preds, MODEL))
    store.end_session("r-unread", 1_700_000_100.0, "end_of_file")
    report = build_report(store.load_session("r-unread"))
    doc = to_dict(report)
    assert doc["reasons"] == {"no_face": 3, "pitch": 1, "yaw": 1}
    text = render_text(report)
    assert "Frames with no face found: 1" in text
    assert "  of which faces the face mesh could not read (reason no_face, counted at level 3): 3" in text
    assert report_csv(report).count(",no_face,") == 3
    assert "<td class=\"l\">faces the face mesh could not read (no_face, level 3)</td><td>3</td>" in report_html(report)
    from tests.support.report_checks import assert_reports_agree  # noqa: PLC0415

    assert_reports_agree(report, text)
    # Class-level only: the count names no student, so it stays.
    assert build_report(store.load_session("r-unread"), class_level_only=True).reasons["no_face"] == 3
