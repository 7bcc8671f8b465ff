"""One report in its four formats (text, JSON, CSV, HTML) cross-checked against its own timeline.

Issue 21: the formats must say one thing. Every count is derived here from the timeline (the
predictions themselves) and then read back out of each format: the text by its lines, the
CSV by its rows, the HTML by its tables. Moments are checked as mm:ss.s, written out here
rather than taken from shared/data/clock.py, so that function is checked too.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from html.parser import HTMLParser
from typing import Any

from shared.data.report_doc import Report, to_dict
from shared.data.report_export import report_csv, report_html

MMSS = r"\d\d:\d\d\.\d"


def mmss(seconds: float) -> str:
    tenths = round(seconds * 10)
    return f"{tenths // 600:02d}:{tenths % 600 // 10:02d}.{tenths % 10}"


class _Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts, under the <h2> before it."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self.heading, self._cell, self._in_h2 = "", None, False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append((self.heading, []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "h2":
            self._in_h2, self.heading = True, ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][1][-1].append(self._cell.strip())
            self._cell = None
        elif tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        elif self._in_h2:
            self.heading += data


def html_tables(page: str) -> dict[str, list[list[str]]]:
    """Heading -> the rows of the tables under it (the first table, before any heading: "summary")."""
    parser = _Tables()
    parser.feed(page)
    out: dict[str, list[list[str]]] = {}
    for heading, rows in parser.tables:
        out.setdefault(heading or "summary", []).extend(rows)
    return out


def _moment(entry: dict[str, Any], started: float) -> float:
    return entry["t_media"] if entry.get("t_media") is not None else entry["t_capture"] - started


def runs_at_2(timeline: list[dict[str, Any]], started: float) -> list[tuple[str, int, float, float, int]]:
    """Per student, each run of consecutive predictions at level 2 or more: (stream, student, from, to, n)."""
    out = []
    for key in sorted({(e["stream"], e["student"]) for e in timeline}):
        mine = sorted((e for e in timeline if (e["stream"], e["student"]) == key), key=lambda e: e["t_capture"])
        run: list[dict[str, Any]] = []
        for e in [*mine, None]:
            if e is not None and e["level"] >= 2:
                run.append(e)
            elif run:
                out.append((*key, _moment(run[0], started), _moment(run[-1], started), len(run)))
                run = []
    return out


def _number(text: str, label: str) -> int:
    found = re.search(rf"^{re.escape(label)}: (\d+)$", text, re.M)
    assert found, f"no line {label!r} in the text report"
    return int(found.group(1))


def assert_reports_agree(report: Report | dict[str, Any], text: str) -> None:
    """Every count of the text, JSON, CSV and HTML agrees with the timeline (and so with the others)."""
    report = to_dict(report) if isinstance(report, Report) else report  # the JSON file's document
    timeline, totals, labels = report["timeline"], report["totals"], report["model"]["labels"]
    started = report["started"]
    several = len(report.get("streams") or []) > 1
    name = (lambda st, n: f"{st} #{n}") if several else (lambda st, n: f"id {n}")
    # What the timeline itself says.
    levels = Counter(e["level"] for e in timeline)
    per_student = Counter((e["stream"], e["student"]) for e in timeline)
    per_stream = Counter(e["stream"] for e in timeline)
    frames_with_predictions = {(e["stream"], e["seq"]) for e in timeline}
    unread = sum((e.get("signals") or {}).get("reason") == "no_face" for e in timeline)
    runs = runs_at_2(timeline, started)

    # JSON. A detection set aside (a hand, a face seen for a moment) is a face found without a
    # prediction, so faces and frames with a face may exceed the timeline, never fall short of it.
    assert totals["predictions"] == len(timeline) <= totals["faces"]
    assert totals["frames"] - totals["frames_without_faces"] >= len(frames_with_predictions)
    assert {int(k): v for k, v in totals["levels"].items() if v} == dict(levels)
    assert {(s.get("stream", report["stream"]), s["student"]): s["predictions"] for s in report["students"]} == \
        dict(per_student)
    assert sum(sum(r["levels"]) for r in report["class_timeline"]) == len(timeline)
    assert sorted((e["stream"], e["student"], _moment({"t_media": e["start_media"], "t_capture": e["start"]}, started),
                   _moment({"t_media": e["end_media"], "t_capture": e["end"]}, started), e["predictions"])
                  for e in report["episodes"]) == sorted(runs)
    assert (report.get("reasons") or {}).get("no_face", 0) == unread
    for st in report["streams"]:
        assert st["totals"]["predictions"] == per_stream[st["stream"]], st["stream"]

    # Text.
    assert _number(text, "Total frames") == totals["frames"]
    assert _number(text, "Frames with no face found") == totals["frames_without_faces"]
    assert _number(text, "Faces found") == totals["faces"]
    assert _number(text, "Predictions") == len(timeline)
    set_aside = (report.get("set_aside") or {}).get("total", 0)
    said = re.search(r"^Detections set aside(?:: none|, never students: (\d+) )", text, re.M)
    assert said and int(said.group(1) or 0) == set_aside
    assert _number(text, "Students") == len(per_student)
    for level, label in enumerate(labels):
        assert re.search(rf"^  {level} {re.escape(label)}: {levels[level]} \(", text, re.M), (level, text)
    for (stream, student), n in per_student.items():
        line = (rf"^{re.escape(name(stream, student))}( \([^)]*\))?: {n} predictions, "
                rf"first seen {MMSS}, last seen {MMSS}$")
        assert re.search(line, text, re.M), (stream, student, n)
    if several:
        for st in report["streams"]:
            assert re.search(rf"^  Frames: {st['totals']['frames']}, no face: {st['totals']['frames_without_faces']}, "
                             rf"faces: {st['totals']['faces']}, predictions: {per_stream[st['stream']]}$", text, re.M)
    said_unread = re.search(r"could not read \(reason no_face, counted at level 3\): (\d+)$", text, re.M)
    assert (int(said_unread.group(1)) if said_unread else 0) == unread
    text_episodes = re.findall(rf"level >= 2 from ({MMSS}) to ({MMSS}) \((\d+) predictions", text)
    assert sorted((a, b, int(n)) for a, b, n in text_episodes) == sorted((mmss(r[2]), mmss(r[3]), r[4]) for r in runs)
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", text), "moments read mm:ss, not hh:mm:ss"

    # CSV: one row per prediction.
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert len(rows) == len(timeline)
    assert Counter(int(r["level"]) for r in rows) == levels
    assert Counter((r["stream"], int(r["student"])) for r in rows) == per_student
    assert sum(r["reason"] == "no_face" for r in rows) == unread
    assert {(r["stream"], int(r["frame"])) for r in rows} == frames_with_predictions

    # HTML: the summary, the levels (the class's and each stream's), the students and the episodes.
    tables = html_tables(report_html(report))
    summary = {row[0]: row[1] for row in tables["summary"]}
    assert int(summary["frames"]) == totals["frames"]
    assert int(summary["frames with no face found"]) == totals["frames_without_faces"]
    assert int(summary["faces"]) == totals["faces"] and int(summary["predictions"]) == len(timeline)
    assert int(summary["students"]) == len(per_student)
    assert int(summary["detections set aside"]) == set_aside
    assert int(next((v for k, v in summary.items() if k.startswith("faces the face mesh could not read")), 0)) == unread
    class_row = next(r for r in tables["Levels"] if r[0] == "class")
    assert int(class_row[1]) == len(timeline)
    assert [int(c.split(" ")[0]) for c in class_row[2:]] == [levels[i] for i in range(len(labels))]
    if several:
        per_stream_rows = {r[0]: int(r[1]) for r in tables["Streams"] if r[0].startswith("stream ")}
        assert per_stream_rows == {f"stream {s}": n for s, n in per_stream.items()}
    html_students = {r[0]: int(r[1]) for r in tables["Students"][1:]}
    assert sorted(html_students.values()) == sorted(per_student.values()) and len(html_students) == len(per_student)
    html_episodes = tables.get("Episodes (level 2 or more)", [[]])[1:]
    assert sorted((r[1], r[2], int(r[3])) for r in html_episodes) == \
        sorted((mmss(r[2]), mmss(r[3]), r[4]) for r in runs)
