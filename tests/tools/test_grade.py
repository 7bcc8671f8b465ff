"""`engagement grade`: a report against a sample's truth, on reports built here by hand.

The grade matches students to faces by where their boxes sit, says of each scripted stretch
whether a prediction reached its level (and when the report had it), counts level-2 runs
nobody scripted, and the share of predictions that agree with the truth. The real demo run
is graded in tests/e2e/test_demo_report.py.
"""

from __future__ import annotations

import json
from typing import Any

from shared.data.report_doc import from_dict
from tests.support.reports import report_dict
from tests.support.runs import engagement
from tools.grade import grade as grade_report
from tools.grade import render

FACE_1 = [100, 100, 80, 80]
FACE_2 = [400, 100, 80, 80]


def _truth() -> dict:
    return {"video": "x.avi", "seconds": 20.0, "faces": [
        {"face": 1, "student": 1, "box": FACE_1, "stretches": [
            {"state": "turned_away", "level": 2, "start": 2.0, "end": 5.0},
            {"state": "looking_down", "level": 2, "start": 10.0, "end": 13.0}]},
        {"face": 2, "student": 2, "box": FACE_2, "stretches": []}], "absent": []}


def _entry(student: int, t: float, level: int, box: list[int]) -> dict:
    return {"stream": "cam0", "seq": int(t * 2), "student": student, "level": level, "probs": [0.25] * 4,
            "t_media": t, "t_capture": 1e9 + t, "box": [box[0] + 3, box[1] - 2, box[2], box[3]]}


def _report(levels_1: dict[float, int], levels_2: dict[float, int], student_of_face_1: int = 1) -> dict:
    t = [i * 0.5 for i in range(40)]
    timeline = [_entry(student_of_face_1, x, levels_1.get(x, 0), FACE_1) for x in t]
    timeline += [_entry(2, x, levels_2.get(x, 0), FACE_2) for x in t]
    return report_dict(timeline=timeline, class_level_only=False)  # grading reads the timeline alone


def grade(report: dict, truth: dict, **options: Any) -> dict:
    """The grade of the report the test built as its file holds it, read as the command reads it."""
    return grade_report(from_dict(report), truth, **options)


def test_found_missed_and_not_scripted_stretches_with_their_times():
    # Face 1: the first stretch at level 2 from 3.0 to 4.5; the second never reaches 2.
    # Face 2 (scripted attentive): level 3 from 16.0 to 17.0, which nobody scripted.
    face_1 = {3.0: 2, 3.5: 2, 4.0: 3, 4.5: 2, 11.0: 1}
    face_2 = {16.0: 3, 16.5: 3, 17.0: 3}
    result = grade(_report(face_1, face_2), _truth(), ease=1.0)
    assert result["students_on_faces"] == {"1": {"1": 40}, "2": {"2": 40}} and result["strangers"] == []
    first, second = result["stretches"]
    assert (first["found"], first["reported"], first["at_level"]) == (True, [[3.0, 4.5]], 4)
    assert first["predictions"] == len([x for x in range(40) if 2.0 <= x * 0.5 <= 6.0])
    assert (second["found"], second["reported"], second["at_level"]) == (False, [], 0)
    assert result["found"] == 1
    assert [(a["face"], a["start"], a["end"], a["predictions"]) for a in result["false_alarms"]] == [(2, 16.0, 17.0, 3)]
    # Agreement: every prediction not within 1 s of a scripted change, compared with the truth.
    edges = [2.0, 5.0, 10.0, 13.0]
    counted_1 = [x * 0.5 for x in range(40) if all(abs(x * 0.5 - e) >= 1.0 for e in edges)]
    wrong_1 = [x for x in counted_1 if (2.0 <= x <= 5.0 or 10.0 <= x <= 13.0) != (face_1.get(x, 0) >= 2)]
    assert result["counted"] == len(counted_1) + 40
    assert result["agreed"] == result["counted"] - len(wrong_1) - 3
    text = render(result, "x.truth.json")
    assert "found  face 1 turned_away (level 2): scripted 00:02.0-00:05.0, reported 00:03.0-00:04.5" in text
    assert "MISSED face 1 looking_down (level 2): scripted 00:10.0-00:13.0, reported -" in text
    assert "NOT SCRIPTED face 2: level 2 or more 00:16.0-00:17.0 (3 predictions)" in text
    assert f"Inside the scripted stretches: 4 of {first['predictions'] + second['predictions']} predictions " \
           "at the scripted level" in text
    assert "Stretches found: 1 of 2; times away found: 0 of 0; false alarms: 1; agreement with the truth" in text


def test_students_are_matched_by_where_they_sit_not_by_id():
    # Face 1's student got id 7 (a tracker that numbered differently); a third student sits nowhere.
    report = _report({3.0: 2}, {}, student_of_face_1=7)
    report["timeline"].append(_entry(9, 1.0, 0, [560, 380, 60, 60]))
    result = grade(report, _truth())
    assert result["students_on_faces"] == {"1": {"7": 40}, "2": {"2": 40}}
    assert result["strangers"] == ["9"] and result["students"] == 3 and result["off_face_predictions"] == 1
    assert result["stretches"][0]["found"] is True


def test_ids_that_swap_are_shown_and_each_face_is_graded_on_its_own_predictions():
    # After 8 s the tracker gives face 1's student id 2 and face 2's id 1 (as after everyone left the frame).
    report = _report({11.0: 2, 11.5: 2}, {})
    for e in report["timeline"]:
        if e["t_media"] >= 8.0:
            e["student"] = 3 - e["student"]
    result = grade(report, _truth())
    assert result["students_on_faces"] == {"1": {"1": 16, "2": 24}, "2": {"1": 24, "2": 16}}
    # Face 1's phone stretch is found though its id is 2 by then, and face 2 gets no false alarm.
    assert [s["found"] for s in result["stretches"]] == [False, True] and result["false_alarms"] == []
    assert "students seen on more than one face (ids swapped or merged): 1, 2" in render(result)


def test_the_command_grades_the_newest_report_of_a_folder_and_refuses_bad_input(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "old.json").write_text(json.dumps(_report({}, {})))
    (reports / "new.json").write_text(json.dumps(_report({3.0: 2, 11.0: 2}, {})))
    (tmp_path / "x.truth.json").write_text(json.dumps(_truth()))
    out = engagement(tmp_path, "grade", "reports", "x.truth.json")
    assert out.code == 0, out.err
    assert out.out.splitlines()[0] == "report reports/new.json"
    assert "Stretches found: 2 of 2; times away found: 0 of 0; false alarms: 0" in out.out
    strict = engagement(tmp_path, "grade", "reports/old.json", "x.truth.json", "--strict")
    assert strict.code == 1 and "Stretches found: 0 of 2" in strict.out
    as_json = json.loads(engagement(tmp_path, "grade", "reports/new.json", "x.truth.json", "--json").out)
    assert as_json["found"] == 2
    for args in (("nothing.json", "x.truth.json"), ("reports/new.json", "reports/new.json")):
        bad = engagement(tmp_path, "grade", *args)
        assert bad.code == 2 and len(bad.err_lines) == 1 and "Traceback" not in bad.err, bad.err


def test_times_away_are_found_when_no_prediction_falls_inside_them():
    truth = {**_truth(), "absent": [[6.2, 7.8]]}
    report = _report({}, {})
    # Face 1 really left (no prediction 6.5-7.5); face 2 has a student "seen" there all along.
    report["timeline"] = [e for e in report["timeline"] if not (e["student"] == 1 and 6.2 < e["t_media"] < 7.8)]
    result = grade(report, truth, ease=1.0)
    away = {a["face"]: a for a in result["absences"]}
    assert (away[1]["found"], away[1]["last_before"], away[1]["first_after"], away[1]["predictions"]) == \
        (True, 6.0, 8.0, 0)
    assert (away[2]["found"], away[2]["predictions"]) == (False, 3)
    assert result["absences_found"] == 1
    # A prediction while the face is away is a disagreement, whatever its level.
    # face 2: its three; face 1: the three moments inside each stretch at least 1 s from its ends, read level 0
    assert result["counted"] - result["agreed"] == 3 + 3 + 3
    text = render(result)
    assert "found  face 1 left the frame: scripted 00:06.2-00:07.8, last prediction 00:06.0, next 00:08.0 " \
           "(0 predictions while away)" in text
    assert "MISSED face 2 left the frame" in text and "times away found: 1 of 2" in text
