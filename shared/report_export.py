"""A session report (the JSON document the reporter writes) as CSV or a self-contained HTML page.

Pure functions over the report dict, so the command line (`engagement report <session>
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
from datetime import datetime, timezone
from typing import Any

from shared.roster import several_streams, student_label

LEVELS = 4
# Signals the attention baseline explains its level with (the smoothed values it decided on).
SIGNAL_COLUMNS = ("yaw", "pitch", "roll", "eye_openness", "mesh_confidence", "score", "reason")
STUDENT_COLUMNS = ("frame", "timestamp", "t_capture", "stream", "student", "confidence", "box_x", "box_y",
                   "box_w", "box_h", *SIGNAL_COLUMNS, "level", "label", *(f"p{i}" for i in range(LEVELS)))
CLASS_COLUMNS = ("frame", "timestamp", "t_capture", "stream", *(f"level_{i}" for i in range(LEVELS)))
LEVEL_COLOURS = ("#2e7d32", "#9e9d24", "#ef6c00", "#c62828")


def _timestamp(entry: dict[str, Any], started: float | None) -> float | None:
    """Seconds into the session: media time for files, else capture time minus the start."""
    if entry.get("t_media") is not None:
        return round(float(entry["t_media"]), 3)
    if entry.get("t_capture") is not None and started is not None:
        return round(float(entry["t_capture"]) - started, 3)
    return None


def _cell(value: Any) -> Any:
    return "" if value is None else value


def report_csv(report: dict[str, Any]) -> str:
    """Per-prediction rows (or per-frame class rows for a class-level report) as CSV text."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    started = report.get("started")
    labels = (report.get("model") or {}).get("labels") or []
    if report.get("class_level_only") or not report.get("timeline"):
        writer.writerow(CLASS_COLUMNS)
        for row in report.get("class_timeline") or []:
            writer.writerow([row["seq"], _cell(_timestamp(row, started)), row["t_capture"], row["stream"],
                             *row["levels"]])
        return out.getvalue()
    writer.writerow(STUDENT_COLUMNS)
    for e in report["timeline"]:
        box = list(e.get("box") or [None] * 4)
        signals = e.get("signals") or {}
        probs = list(e.get("probs") or [])
        level = e["level"]
        writer.writerow([e["seq"], _cell(_timestamp(e, started)), e["t_capture"], e["stream"], e["student"],
                         _cell(e.get("conf")), *(_cell(b) for b in box[:4]),
                         *(_cell(signals.get(k)) for k in SIGNAL_COLUMNS), level,
                         labels[level] if level < len(labels) else "",
                         *(_cell(probs[i] if i < len(probs) else None) for i in range(LEVELS))])
    return out.getvalue()


# --- HTML -------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
.note{background:#fff3cd;padding:.5em;border:1px solid #e0c36c}
svg{border:1px solid #ddd;background:#fafafa}
"""


def _clock(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _row(cells: list[Any], head: bool = False, first_left: bool = True) -> str:
    tag = "th" if head else "td"
    parts = []
    for i, c in enumerate(cells):
        cls = ' class="l"' if first_left and i == 0 else ""
        parts.append(f"<{tag}{cls}>{html.escape(str(c))}</{tag}>")
    return "<tr>" + "".join(parts) + "</tr>"


def _levels_table(rows: list[tuple[str, dict[str, Any]]], labels: list[str]) -> str:
    head = _row(["", "predictions", *(f"{i} {labels[i] if i < len(labels) else ''}" for i in range(LEVELS))],
                head=True)
    body = []
    for name, r in rows:
        levels, percent = r.get("levels", {}), r.get("percent", {})
        body.append(_row([name, r.get("predictions", 0),
                          *(f"{levels.get(str(i), 0)} ({percent.get(str(i), 0.0):.1f}%)" for i in range(LEVELS))]))
    return "<table>" + head + "".join(body) + "</table>"


def _timeline_svg(report: dict[str, Any], width: int = 800, lane: int = 18) -> str:
    """One lane per student (or one for the class), a coloured tick per prediction by level."""
    started = report.get("started")
    entries = report.get("timeline") or []
    if entries:
        several = several_streams(report)
        lanes = sorted({(e["stream"], e["student"]) for e in entries})
        lane_of = {key: i for i, key in enumerate(lanes)}
        points = [(lane_of[(e["stream"], e["student"])], _timestamp(e, started), e["level"]) for e in entries]
        names = [student_label(stream, n) if several else f"student {n}" for stream, n in lanes]
    else:  # class level: the worst level present in each frame
        rows = report.get("class_timeline") or []
        points = [(0, _timestamp(r, started), max((i for i, n in enumerate(r["levels"]) if n), default=0))
                  for r in rows]
        names = ["class (worst)"]
    points = [p for p in points if p[1] is not None]
    if not points:
        return "<p>No predictions.</p>"
    end = max(p[1] for p in points) or 1.0
    left, height = 110, lane * len(names) + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    for i, name in enumerate(names):
        parts.append(f'<text x="4" y="{i * lane + 13}" font-size="11">{html.escape(name)}</text>')
    span = width - left - 10
    for lane_i, t, level in points:
        x = left + span * t / end
        parts.append(f'<rect x="{x:.1f}" y="{lane_i * lane + 2}" width="3" height="{lane - 4}" '
                     f'fill="{LEVEL_COLOURS[min(level, LEVELS - 1)]}"><title>{t:.1f} s: level {level}</title></rect>')
    parts.append(f'<text x="{left}" y="{height - 6}" font-size="11">0 s</text>'
                 f'<text x="{width - 60}" y="{height - 6}" font-size="11">{end:.0f} s</text></svg>')
    return "".join(parts)


def _who(row: dict[str, Any], several: bool, report: dict[str, Any]) -> str:
    """A student row or episode as the page names it (the roster's name first)."""
    stream = row.get("stream", report.get("stream", ""))
    name = row.get("name") or next((s.get("name") for s in report.get("students") or []
                                    if (s.get("stream"), s["student"]) == (stream, row["student"])), None)
    label = student_label(stream, row["student"]) if several else f"student {row['student']}"
    return f"{name} ({label})" if name else label


def report_html(report: dict[str, Any]) -> str:
    """A self-contained page (inline style and SVG, no script, nothing fetched) of one report."""
    labels = (report.get("model") or {}).get("labels") or [str(i) for i in range(LEVELS)]
    totals = report.get("totals") or {}
    several = several_streams(report)
    esc = html.escape
    started = report.get("started")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Engagement report {esc(str(report.get('session', '')))}</title>",
           f"<style>{_STYLE}</style></head><body>",
           f"<h1>Engagement report: session {esc(str(report.get('session', '')))}</h1>",
           "<table>",
           _row(["class", report.get("class", "")]),
           _row(["streams", ", ".join(st["stream"] for st in report["streams"])] if several
                else ["stream", report.get("stream", "")]),
           _row(["model", (report.get("model") or {}).get("name", "")]),
           _row(["started", _clock(started)]), _row(["ended", _clock(report.get("ended"))]),
           _row(["end reason", report.get("end_reason", "")]),
           _row(["frames", totals.get("frames", 0)]), _row(["faces", totals.get("faces", 0)]),
           *([_row(["recording", report["recording"]])] if report.get("recording") else []),
           *(_row([f"recording of {stream}", path]) for stream, path in (report.get("recordings") or {}).items()),
           "</table>"]
    if report.get("note"):
        out.append(f'<p class="note">{esc(report["note"])}</p>')
    out += ["<h2>Levels</h2>", _levels_table([("class", totals)], labels)]
    if several:  # one stream: its figures are the class's above
        out += ["<h2>Streams</h2><table>",
                _row(["stream", "source", "started", "ended", "end reason", "frames", "faces", "students"], head=True)]
        for st in report["streams"]:
            out.append(_row([st["stream"], st.get("source") or "-", _clock(st.get("started")),
                             _clock(st.get("ended")), st.get("end_reason") or "-", st["totals"].get("frames", 0),
                             st["totals"].get("faces", 0), len(st.get("students") or [])]))
        out += ["</table>", _levels_table([(f"stream {st['stream']}", st["totals"]) for st in report["streams"]],
                                          labels)]
    if report.get("students"):
        out += ["<h2>Students</h2>",
                _levels_table([(_who(s, several, report), s) for s in report["students"]], labels)]
    out += ["<h2>Timeline</h2>", _timeline_svg(report),
            "<p>" + " ".join(f'<span style="color:{LEVEL_COLOURS[i]}">&#9632;</span> {i} {esc(labels[i])}'
                             for i in range(min(LEVELS, len(labels)))) + "</p>"]
    if report.get("episodes"):
        out += ["<h2>Episodes (level 2 or more)</h2><table>",
                _row(["student", "from (s)", "to (s)", "predictions", "worst level"], head=True)]
        for e in report["episodes"]:
            frm = _timestamp({"t_media": e.get("start_media"), "t_capture": e.get("start")}, started)
            to = _timestamp({"t_media": e.get("end_media"), "t_capture": e.get("end")}, started)
            out.append(_row([_who(e, several, report), _cell(frm), _cell(to), e["predictions"], e["max_level"]]))
        out.append("</table>")
    if report.get("class_level_only"):
        out.append("<p>Class-level report: no per-student rows.</p>")
    # The report itself, for whoever wants the numbers behind the page.
    data = json.dumps({k: v for k, v in report.items() if k != "timeline"}, indent=1)
    out += ['<details><summary>report JSON (without the timeline)</summary><pre>', esc(data),
            "</pre></details></body></html>"]
    return "\n".join(out) + "\n"
