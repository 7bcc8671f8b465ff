"""shared/data/report_export.py: CSV rows and the HTML page follow the report they are made from."""

import csv
import io
from html.parser import HTMLParser

from services.reporter.report import build_report
from shared.data.report_doc import to_dict
from shared.data.report_export import CLASS_COLUMNS, STUDENT_COLUMNS, report_csv, report_html


def _session(n_frames: int = 6) -> dict:
    timeline = []
    for seq in range(n_frames):
        for student in (1, 2):
            level = 3 if (student == 2 and seq >= 3) else 0
            timeline.append({"stream": "cam0", "seq": seq, "student": student, "level": level,
                             "probs": [0.1, 0.2, 0.3, 0.4] if level else [0.7, 0.1, 0.1, 0.1],
                             "t_capture": 1000.0 + seq * 0.5, "t_media": seq * 0.5,
                             "box": [10 * student, 20, 50, 60], "conf": 0.9 + student / 100,
                             "signals": {"yaw": 40.0 * (level > 0), "pitch": -3.5, "eye_openness": 0.31,
                                         "reason": "turned away" if level else "attentive"}})
    levels = {str(i): sum(1 for e in timeline if e["level"] == i) for i in range(4)}
    totals = {"frames": n_frames, "frames_without_faces": 0, "faces": 2 * n_frames,
              "predictions": len(timeline), "levels": levels}
    meta = {"session": "cam0-x", "class": "c", "stream": "cam0", "started": 1000.0, "ended": 1003.0,
            "end_reason": "end_of_file",
            "model": {"name": "baseline", "kind": "baseline", "baseline": True, "affect": False,
                      "labels": ["engaged", "distracted", "bored", "away"]}}
    students = [{"student": s, "predictions": n_frames,
                 "levels": {str(i): sum(1 for e in timeline if e["student"] == s and e["level"] == i)
                            for i in range(4)},
                 "first_seen": 1000.0, "last_seen": 1002.5, "first_media": 0.0, "last_media": 2.5}
                for s in (1, 2)]
    return {"meta": meta, "totals": totals, "students": students, "timeline": timeline}


def test_csv_has_one_row_per_prediction_with_its_signals():
    report = to_dict(build_report(_session(), generated_at=0.0))
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert list(rows[0]) == list(STUDENT_COLUMNS)
    assert len(rows) == len(report["timeline"]) == 12
    away = [r for r in rows if r["level"] == "3"]
    assert {r["student"] for r in away} == {"2"} and len(away) == 3
    assert all(r["label"] == "away" and float(r["yaw"]) == 40.0 and r["box_x"] == "20" for r in away)
    assert float(rows[0]["eye_openness"]) == 0.31 and rows[0]["timestamp"] == "0.0"


def test_class_level_csv_counts_students_per_frame():
    report = to_dict(build_report(_session(), class_level_only=True, generated_at=0.0))
    rows = list(csv.reader(io.StringIO(report_csv(report))))
    assert tuple(rows[0]) == CLASS_COLUMNS
    assert [r[4:] for r in rows[1:]] == [["2", "0", "0", "0"]] * 3 + [["1", "0", "0", "1"]] * 3
    assert "student" not in report_csv(report)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.external.append(value)


def test_html_is_self_contained_and_shows_the_episode():
    report = build_report(_session(), generated_at=0.0)
    page = report_html(report)
    parser = _Page()
    parser.feed(page)
    assert parser.external == [] and "script" not in parser.tags
    assert parser.tags.count("rect") == 12  # one tick per prediction on the timeline
    assert "Episodes" in page and "student 2" in page and "not trained on engagement data" in page


def test_html_escapes_what_it_shows():
    data = _session()
    data["meta"]["class"] = "<script>alert(1)</script>"
    page = report_html(build_report(data, generated_at=0.0))
    assert "<script>" not in page and "&lt;script&gt;" in page


def _two_streams() -> dict:
    """The session above seen by a second camera too: its students 1 and 2 are other people."""
    data = _session()
    extra = [{**e, "stream": "cam1", "level": 2 if e["student"] == 1 else 0} for e in data["timeline"]]
    data["timeline"] = sorted(data["timeline"] + extra, key=lambda e: (e["t_capture"], e["stream"], e["student"]))
    data["students"] = [{**s, "stream": stream} for stream in ("cam0", "cam1") for s in data["students"]]
    data["streams"] = [{"stream": stream, "source": f"{stream}.mp4", "started": 1000.0, "ended": 1003.0,
                        "end_reason": reason, "totals": data["totals"]}
                       for stream, reason in (("cam0", "end_of_file"), ("cam1", "gave_up"))]
    return data


def test_two_streams_name_students_by_stream_in_the_page_and_the_csv():
    report = build_report(_two_streams(), generated_at=0.0)
    page = report_html(report)
    assert "<h2>Streams</h2>" in page and "cam1.mp4" in page and "gave_up" in page
    for label in ("cam0 #1", "cam0 #2", "cam1 #1", "cam1 #2"):
        assert f">{label}<" in page  # the students' table and the timeline's lanes
    assert ">cam1 #1</td>" in page.split("Episodes")[1]  # cam1's student 1 at level 2: an episode of its own
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert {(r["stream"], r["student"]) for r in rows} == {("cam0", "1"), ("cam0", "2"), ("cam1", "1"), ("cam1", "2")}


def test_one_stream_page_names_students_as_before():
    page = report_html(build_report(_session(), generated_at=0.0))
    body = page.split("</style>")[1].split("<details>")[0]
    assert "<h2>Streams</h2>" not in body and ">student 1<" in body and " #" not in body
