"""A session report (the JSON document the reporter writes) as CSV or a self-contained HTML page.

Pure functions over the typed report (shared/data/report_doc.py), so the command line (`engagement report <session>
--csv|--html`) and the web service offer the same files. The CSV has one row per
prediction (a student in a frame), in the spirit of OpenFace's per-frame CSV: frame,
timestamp, face id, confidence, box, head pose and eye signals, then the level and its
probabilities. A class-level report has no per-student rows: its CSV has one row per
frame with the number of students at each level.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
from msgspec import UnsetType

from shared.data.clock import offset_clock, seconds_into, wall_clock
from shared.data.lesson import DEFAULT_ALERT_SECONDS, alerts, names
from shared.data.levels import UNREAD_REASON
from shared.data.report_doc import (
    UNSET,
    ClassFrame,
    Episode,
    Report,
    StoreSection,
    Student,
    TimelineEntry,
    Totals,
    from_dict,
    to_dict,
)
from shared.data.roster import several_streams, student_label

LEVELS = 4
# Signals the attention baseline explains its level with (the smoothed values it decided on).
SIGNAL_COLUMNS = ("yaw", "pitch", "roll", "eye_openness", "mesh_confidence", "score", "reason")
STUDENT_COLUMNS = ("frame", "timestamp", "t_capture", "stream", "student", "confidence", "box_x", "box_y",
                   "box_w", "box_h", *SIGNAL_COLUMNS, "level", "label", *(f"p{i}" for i in range(LEVELS)),
                   "name")  # last: the display name (a roster's or the screen's) on the box; empty without one
CLASS_COLUMNS = ("frame", "timestamp", "t_capture", "stream", *(f"level_{i}" for i in range(LEVELS)))
# Okabe and Ito's colour-blind-safe palette, as the pages (services/web/static/style.css); a shape
# goes with each level wherever it is named, so the colour is never the only cue.
LEVEL_COLOURS = ("#0072b2", "#56b4e9", "#e69f00", "#d55e00")
LEVEL_SHAPES = ("\u25cf", "\u25b2", "\u25c6", "\u25a0")  # circle, triangle, diamond, square


def _timestamp(entry: TimelineEntry | ClassFrame, started: float | None) -> float | None:
    """Seconds into the session: media time for files, else capture time minus the start."""
    t = seconds_into(entry.t_capture, entry.t_media, started)
    return None if t is None else round(t, 3)


def _cell(value: Any) -> Any:
    return "" if value is None or value is UNSET else value


def _typed(source: Report | dict[str, Any]) -> Report:
    """The typed report; a file's document (a dict, as json.loads gives) is checked into one."""
    return source if isinstance(source, Report) else from_dict(source)


def report_csv(source: Report | dict[str, Any]) -> str:
    """Per-prediction rows (or per-frame class rows for a class-level report) as CSV text."""
    return "".join(report_csv_chunks(_typed(source)))


def report_csv_chunks(report: Report, entries: Iterable[TimelineEntry] | None = None,
                      rows: int = 2000) -> Iterator[str]:
    """report_csv's text, `rows` rows at a time. `entries`: the timeline's entries, whole, when the report's
    own are not (the web's lean timeline of a long class)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    started = report.started
    labels = report.model.labels
    if report.class_level_only or not report.timeline:
        writer.writerow(CLASS_COLUMNS)
        for row in report.class_timeline:
            writer.writerow([row.seq, _cell(_timestamp(row, started)), row.t_capture, row.stream, *row.levels])
        yield out.getvalue()
        return
    writer.writerow(STUDENT_COLUMNS)
    named = names(report)
    for n, e in enumerate(report.timeline if entries is None else entries, start=1):
        box: list[Any] = list(e.box) if e.box else [None] * 4
        signals = e.signals or {}
        probs = e.probs
        writer.writerow([e.seq, _cell(_timestamp(e, started)), e.t_capture, e.stream, e.student,
                         _cell(e.conf), *(_cell(b) for b in box[:4]),
                         *(_cell(signals.get(k)) for k in SIGNAL_COLUMNS), e.level,
                         labels[e.level] if e.level < len(labels) else "",
                         *(_cell(probs[i] if i < len(probs) else None) for i in range(LEVELS)),
                         named.get((e.stream, e.student), "")])
        if n % rows == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


# --- HTML -------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
.note{background:#fff3cd;padding:.5em;border:1px solid #e0c36c}
svg{border:1px solid #ddd;background:#fafafa}
"""


def _row(cells: list[Any], head: bool = False, first_left: bool = True) -> str:
    tag = "th" if head else "td"
    parts = []
    for i, c in enumerate(cells):
        cls = ' class="l"' if first_left and i == 0 else ""
        parts.append(f"<{tag}{cls}>{html.escape(str(c))}</{tag}>")
    return "<tr>" + "".join(parts) + "</tr>"


def _levels_table(rows: list[tuple[str, Totals | Student]], labels: list[str]) -> str:
    head = _row(["", "predictions", *(f"{i} {labels[i] if i < len(labels) else ''}" for i in range(LEVELS))],
                head=True)
    body = []
    for name, r in rows:
        levels, percent = r.levels, r.percent
        body.append(_row([name, r.predictions,
                          *(f"{levels.get(str(i), 0)} ({percent.get(str(i), 0.0):.1f}%)" for i in range(LEVELS))]))
    return "<table>" + head + "".join(body) + "</table>"


def _timeline_svg(report: Report, width: int = 800, lane: int = 18,
                  alert_seconds: float = DEFAULT_ALERT_SECONDS) -> str:
    """One lane per student (or one for the class), a coloured tick per prediction by level, a
    dashed frame around each alert (a run at level 2 or more of `alert_seconds` or longer)."""
    started = report.started
    entries = report.timeline
    if entries:
        several = several_streams(report)
        lanes = sorted({(e.stream, e.student) for e in entries})
        lane_of = {key: i for i, key in enumerate(lanes)}
        points = [(lane_of[(e.stream, e.student)], _timestamp(e, started), e.level) for e in entries]
        names = [student_label(stream, n) if several else f"student {n}" for stream, n in lanes]
    else:  # class level: the worst level present in each frame
        points = [(0, _timestamp(r, started), max((i for i, n in enumerate(r.levels) if n), default=0))
                  for r in report.class_timeline]
        names = ["class (worst)"]
    timed = [(lane_i, t, level) for lane_i, t, level in points if t is not None]
    if not timed:
        return "<p>No predictions.</p>"
    end = max(t for _, t, _ in timed) or 1.0
    left, height = 110, lane * len(names) + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    for i, name in enumerate(names):
        parts.append(f'<text x="4" y="{i * lane + 13}" font-size="11">{html.escape(name)}</text>')
    span = width - left - 10
    for lane_i, t, level in timed:
        x = left + span * t / end
        parts.append(f'<rect x="{x:.1f}" y="{lane_i * lane + 2}" width="3" height="{lane - 4}" '
                     f'fill="{LEVEL_COLOURS[min(level, LEVELS - 1)]}">'
                     f'<title>{offset_clock(t)}: level {level}</title></rect>')
    for a in alerts(report, alert_seconds) if entries else []:
        alert_lane = lane_of.get((a["stream"], a["student"]))
        if alert_lane is None or a["start_offset"] is None or a["end_offset"] is None:
            continue
        x0, x1 = left + span * a["start_offset"] / end, left + span * a["end_offset"] / end
        parts.append(f'<rect x="{x0:.1f}" y="{alert_lane * lane + 1}" width="{max(3.0, x1 - x0 + 3):.1f}" '
                     f'height="{lane - 2}" fill="none" stroke="#1b1f24" stroke-width="1.5" stroke-dasharray="4 2">'
                     f'<title>needs attention: level 2 or more for {a["seconds"]:g} s</title></rect>')
    parts.append(f'<text x="{left}" y="{height - 6}" font-size="11">{offset_clock(0)}</text>'
                 f'<text x="{width - 60}" y="{height - 6}" font-size="11">{offset_clock(end)}</text></svg>')
    return "".join(parts)


def _who(row: Student | Episode, several: bool, report: Report) -> str:
    """A student row or episode as the page names it (the roster's name first)."""
    stream = report.stream if row.stream is UNSET else row.stream
    return _named(report, stream, row.student, several, row.name if isinstance(row, Student) else None)


def _named(report: Report, stream: str, student: int | str, several: bool, name: str | UnsetType | None) -> str:
    name = name or next((s.name for s in report.students
                         if (None if s.stream is UNSET else s.stream, s.student) == (stream, student) and s.name), None)
    label = student_label(stream, student) if several else f"student {student}"
    return f"{name} ({label})" if name else label


def _marks_html(report: Report, labels: list[str], several: bool) -> list[str]:
    """The teacher's marks: when, whom, the level given and the model's (as the text report lists them)."""
    marks = report.marks
    if not marks:
        return []
    out = [f"<h2>Teacher's marks ({len(marks)})</h2><table>",
           _row(["when", "student", "teacher", "model"], head=True)]
    for m in marks:
        predicted = m.level_predicted
        model = "-" if predicted is None else f"{predicted} {labels[predicted] if predicted < len(labels) else ''}"
        given = m.level_given
        student: int | str = int(m.student) if m.student.isdigit() else m.student
        who = _named(report, m.stream or report.stream, student, several, None)
        t_media = None if m.t_media is UNSET else m.t_media
        out.append(_row([offset_clock(seconds_into(m.t, t_media, report.started)), who,
                         f"{given} {labels[given] if given < len(labels) else ''}", model]))
    return [*out, "</table>"]


def report_html(source: Report | dict[str, Any], alert_seconds: float = DEFAULT_ALERT_SECONDS) -> str:
    """A self-contained page (inline style and SVG, no script, nothing fetched) of one report;
    its timeline frames the alerts (runs at level 2 or more of `alert_seconds` or longer)."""
    report = _typed(source)
    labels = report.model.labels or [str(i) for i in range(LEVELS)]
    several = several_streams(report)
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Engagement report {esc(report.session)}</title>",
           f"<style>{_STYLE}</style></head><body>",
           f"<h1>Engagement report: session {esc(report.session)}</h1>",
           *_summary_table(report, several)]
    if report.note:
        out.append(f'<p class="note">{esc(report.note)}</p>')
    out += ["<h2>Levels</h2>", _levels_table([("class", report.totals)], labels)]
    if several:  # one stream: its figures are the class's above
        out += _streams_html(report, labels)
    if report.students:
        out += ["<h2>Students</h2>", _levels_table([(_who(s, several, report), s) for s in report.students], labels)]
    out += ["<h2>Timeline</h2>", _timeline_svg(report, alert_seconds=alert_seconds),
            "<p>" + " ".join(f'<span style="color:{LEVEL_COLOURS[i]}">{LEVEL_SHAPES[i]}</span> {i} {esc(labels[i])}'
                             for i in range(min(LEVELS, len(labels)))) + "</p>"]
    if report.episodes:
        out += _episodes_html(report, several)
    out += _marks_html(report, labels, several)
    if report.class_level_only:
        out.append("<p>Class-level report: no per-student rows.</p>")
    # The report itself, for whoever wants the numbers behind the page.
    # Without the timeline from the start: a long class's as dicts would be hundreds of megabytes.
    data = json.dumps({k: v for k, v in to_dict(msgspec.structs.replace(report, timeline=[])).items()
                       if k != "timeline"}, indent=1)
    out += ['<details><summary>report JSON (without the timeline)</summary><pre>', esc(data),
            "</pre></details></body></html>"]
    return "\n".join(out) + "\n"


def _summary_table(report: Report, several: bool) -> list[str]:
    """The table at the top: what was watched, when, and the counts."""
    totals, store = report.totals, report.store
    unread = report.reasons.get(UNREAD_REASON, 0)
    return ["<table>",
            _row(["class", report.class_]),
            _row(["streams", ", ".join(st.stream for st in report.streams)] if several
                 else ["stream", report.stream]),
            _row(["model", report.model.name]),
            _row(["started", wall_clock(report.started)]), _row(["ended", wall_clock(report.ended)]),
            _row(["end reason", report.end_reason]),
            _row(["frames", totals.frames]),
            _row(["frames with no face found", totals.frames_without_faces]),
            _row(["faces", totals.faces]), _row(["predictions", totals.predictions]),
            *([_row([f"faces the face mesh could not read ({UNREAD_REASON}, level 3)", unread])] if unread else []),
            # The text report's other counts, so both say one thing: detections never made students,
            # and where the figures come from when Redis was not all there (the aggregator's journal).
            _row(["detections set aside", report.set_aside.total]),
            *([_row(["figures", store.note]), _row(["missing", "; ".join(store.missing) or "nothing"])]
              if isinstance(store, StoreSection) else []),
            *([] if report.class_level_only else [_row(["students", len(report.students)])]),
            *([_row(["recording", report.recording])] if report.recording else []),
            *(_row([f"recording of {stream}", path]) for stream, path in (report.recordings or {}).items()),
            "</table>"]


def _streams_html(report: Report, labels: list[str]) -> list[str]:
    """Each stream's own figures and levels (a class of several cameras)."""
    out = ["<h2>Streams</h2><table>",
           _row(["stream", "source", "started", "ended", "end reason", "frames", "faces", "students"], head=True)]
    for st in report.streams:
        out.append(_row([st.stream, st.source or "-", wall_clock(st.started), wall_clock(st.ended),
                         st.end_reason or "-", st.totals.frames, st.totals.faces, len(st.students)]))
    return [*out, "</table>", _levels_table([(f"stream {st.stream}", st.totals) for st in report.streams], labels)]


def _episodes_html(report: Report, several: bool) -> list[str]:
    """The stretches at level 2 or more, with their offsets into the session."""
    started = report.started
    out = ["<h2>Episodes (level 2 or more)</h2><table>",
           _row(["student", "from", "to", "predictions", "worst level"], head=True)]
    for e in report.episodes:
        frm = offset_clock(seconds_into(e.start, e.start_media, started))
        to = offset_clock(seconds_into(e.end, e.end_media, started))
        out.append(_row([_who(e, several, report), frm, to, e.predictions, e.max_level]))
    return [*out, "</table>"]
