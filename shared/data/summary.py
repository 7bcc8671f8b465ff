"""A lesson's printable summary: one self-contained HTML page laid out for A4 (inline style and
SVG, nothing fetched), which shared/ops/pdf.py prints to PDF with the headless Chromium.

What a colleague or a parent needs on one or two pages: the class, the model and its note,
the totals, the class line, each student's strip and time at level 2 or more, who needed
attention, the episodes, the teacher's marks and how often the model agreed. Names are the
report's own (a roster's or the screen's, on this box only); a class-level report has none.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable
from typing import Any

from shared.data.clock import offset_clock, seconds_into, wall_clock
from shared.data.lesson import alerts, class_line, names, student_label, time_at_level_2_or_more
from shared.data.levels import LEVEL_LABELS, LEVELS
from shared.data.report_doc import UNSET, Report
from shared.data.report_export import LEVEL_COLOURS, LEVEL_SHAPES

STRIP_SLICES = 160  # cells per student strip: a lesson of an hour in slices of 22 s
_STYLE = """
@page { size: A4; margin: 14mm 12mm; }
body { font: 10pt/1.35 system-ui, sans-serif; color: #1b1f24; margin: 0; }
h1 { font-size: 15pt; margin: 0 0 2mm; } h2 { font-size: 11.5pt; margin: 5mm 0 1.5mm; }
table { border-collapse: collapse; margin: 1mm 0; }
td, th { border: 1px solid #bbb; padding: .6mm 1.6mm; text-align: left; }
th { background: #eef0f3; } .num { text-align: right; } .muted { color: #4d5560; }
.note { background: #fff3e0; border: 1px solid #e0c36c; padding: 1mm 2mm; }
.key { margin-right: 4mm; white-space: nowrap; } svg { display: block; }
tr, svg, .keep { break-inside: avoid; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _legend(labels: list[str]) -> str:
    return "<p>" + "".join(
        f'<span class="key"><span style="color:{LEVEL_COLOURS[i]}">{LEVEL_SHAPES[i]}</span> '
        f"{i} {_esc(labels[i])}</span>" for i in range(min(LEVELS, len(labels)))) + "</p>"


def class_line_svg(points: list[list[float]], width: int = 680, height: int = 70) -> str:
    """The class line as stacked bands (level 0 at the top); each point's shares fill the height."""
    if not points:
        return '<p class="muted">No predictions.</p>'
    pts = points if len(points) > 1 else [points[0], [points[0][0] + 1, *points[0][1:]]]
    end = max(pts[-1][0], 1e-6)
    bands = []
    for level in range(LEVELS):
        upper: list[str] = []
        lower: list[str] = []
        for p in pts:
            before = sum(p[1:1 + level])
            x = p[0] / end * width
            upper.append(f"{x:.1f},{before * height:.2f}")
            lower.insert(0, f"{x:.1f},{(before + p[1 + level]) * height:.2f}")
        bands.append(f'<polygon points="{" ".join(upper + lower)}" fill="{LEVEL_COLOURS[level]}"/>')
    axis = (f'<text x="0" y="{height + 11}" font-size="9">{offset_clock(0)}</text>'
            f'<text x="{width - 48}" y="{height + 11}" font-size="9">{offset_clock(end)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 14}" '
            f'role="img" aria-label="class line">{"".join(bands)}{axis}</svg>')


def _strips(report: Report) -> dict[tuple[str, int], list[int | None]]:
    """Per student, the most frequent level in each of (at most) STRIP_SLICES equal slices of the lesson."""
    at = [((e.stream, e.student), seconds_into(e.t_capture, e.t_media, report.started), e.level)
          for e in report.timeline]
    points = [(key, t, level) for key, t, level in at if t is not None]
    end = max((p[1] for p in points), default=0.0) or 1.0
    # No more slices than moments: a short lesson's strip has no empty cell between two predictions.
    slices = max(1, min(STRIP_SLICES, len({t for _, t, _ in points})))
    counts: dict[tuple[str, int], list[Counter[int]]] = {}
    for key, t, level in points:
        cells = counts.setdefault(key, [Counter() for _ in range(slices)])
        cells[min(slices - 1, int(t / end * slices))][level] += 1
    return {key: [c.most_common(1)[0][0] if c else None for c in cells] for key, cells in counts.items()}


def _strip_svg(cells: list[int | None], width: int = 320, height: int = 10) -> str:
    w = width / len(cells)
    rects = "".join(f'<rect x="{i * w:.2f}" y="0" width="{w + 0.3:.2f}" height="{height}" fill="{LEVEL_COLOURS[c]}"/>'
                    for i, c in enumerate(cells) if c is not None)
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{rects}</svg>'


def _students(report: Report, threshold: float) -> list[str]:
    strips, named, at2 = _strips(report), names(report), time_at_level_2_or_more(report)
    if not strips:
        return []
    raised = Counter((a["stream"], a["student"]) for a in alerts(report, threshold))
    rows = ["<h2>Students</h2><table><tr><th>Student</th><th>Over the lesson</th>"
            "<th>Time at level 2+</th><th>Alerts</th></tr>"]
    for key in sorted(strips):
        label = student_label(report, *key)
        who = f"{_esc(named[key])} <span class='muted'>({_esc(label)})</span>" if key in named else _esc(label)
        at_2 = offset_clock(at2.get(key, 0.0))[:-2]  # mm:ss
        rows.append(f"<tr><td>{who}</td><td>{_strip_svg(strips[key])}</td>"
                    f"<td class='num'>{at_2}</td><td class='num'>{raised[key]}</td></tr>")
    return [*rows, "</table>"]


def _who(report: Report, stream: str, student: int) -> str:
    name = names(report).get((stream, int(student)))
    label = student_label(report, stream, int(student))
    return f"{_esc(name)} ({_esc(label)})" if name else _esc(label)


def _level(labels: list[str], level: int) -> str:
    """A level as every table gives it: its shape, its number and its label."""
    return f"{LEVEL_SHAPES[level]} {level} {_esc(labels[level])}"


def _table(heads: list[str], rows: Iterable[list[str]], numbers: tuple[int, ...] = ()) -> list[str]:
    """A table's lines: the head, one line a row (cells already escaped), the end; the columns in
    `numbers` right-aligned."""
    def cell(i: int, text: str) -> str:
        return f"<td class='num'>{text}</td>" if i in numbers else f"<td>{text}</td>"

    return ["<table><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>",
            *("<tr>" + "".join(cell(i, text) for i, text in enumerate(row)) + "</tr>" for row in rows),
            "</table>"]


def _alerts_and_episodes(report: Report, labels: list[str], threshold: float) -> list[str]:
    started = report.started
    out = [f"<h2>Needs attention (level 2 or more for {threshold:g} s or longer)</h2>"]
    found = alerts(report, threshold)
    out += _table(["Student", "From", "For", "Worst level"],
                  ([_who(report, a["stream"], a["student"]), offset_clock(a["start_offset"]), f"{a['seconds']:g} s",
                    _level(labels, a["worst_level"])] for a in found), numbers=(2,)) if found else ["<p>Nobody.</p>"]
    episodes = report.episodes
    out.append(f"<h2>Episodes at level 2 or more ({len(episodes)})</h2>")
    if episodes:
        out += _table(["Student", "From", "To", "Worst level"],
                      ([_who(report, e.stream, e.student),
                        offset_clock(seconds_into(e.start, e.start_media, started)),
                        offset_clock(seconds_into(e.end, e.end_media, started)),
                        _level(labels, e.max_level)] for e in episodes[:40]))
        if len(episodes) > 40:
            out.append(f"<p class='muted'>... and {len(episodes) - 40} more in the full report.</p>")
    return out


def _marks(report: Report, labels: list[str]) -> list[str]:
    a = report.agreement
    marks = report.marks
    out = ["<h2>The teacher's marks</h2>"]
    if not (a.marks or a.without_prediction or marks):
        return [*out, "<p>No marks.</p>"]
    rate = "-" if a.rate is None else f"{100 * a.rate:.0f} %"
    out.append(f"<p>The model agreed with {a.agreed} of the {a.marks} marks it had a "
               f"level for ({rate}).</p>")
    if marks:
        out += _table(["When", "Student", "Teacher", "Model"],
                      ([offset_clock(seconds_into(m.t, None if m.t_media is UNSET else m.t_media, report.started)),
                        _who(report, m.stream or report.stream, int(m.student)),
                        f"{m.level_given} {_esc(labels[m.level_given])}",
                        "-" if m.level_predicted is None else str(m.level_predicted)] for m in marks[:30]))
    return out


def summary_html(report: Report, threshold_seconds: float) -> str:
    """The printable summary of one report (schema 1)."""
    model = report.model
    labels = model.labels or list(LEVEL_LABELS)
    totals = report.totals
    predictions = totals.predictions
    levels = totals.levels
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Lesson summary {_esc(report.session)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>Lesson summary: class {_esc(report.class_)}</h1>",
           f"<p>{_esc(wall_clock(report.started))} to {_esc(wall_clock(report.ended))} &middot; "
           f"session {_esc(report.session)} &middot; model {_esc(model.name or '-')}</p>"]
    if report.note:
        out.append(f'<p class="note">{_esc(report.note)}</p>')
    out += ["<table><tr><th>Frames</th><th>Predictions</th>",
            *(f"<th>{LEVEL_SHAPES[i]} {i} {_esc(labels[i])}</th>" for i in range(LEVELS)), "</tr>",
            f"<tr><td class='num'>{totals.frames}</td><td class='num'>{predictions}</td>",
            *(f"<td class='num'>{100 * int(levels.get(str(i), 0)) / predictions:.0f} %</td>" if predictions
              else "<td class='num'>-</td>" for i in range(LEVELS)), "</tr></table>",
            '<div class="keep"><h2>The class over the lesson</h2>', class_line_svg(class_line(report)),
            _legend(labels), "</div>"]
    out += _students(report, threshold_seconds)
    out += _alerts_and_episodes(report, labels, threshold_seconds)
    out += _marks(report, labels)
    if report.class_level_only:
        out.append("<p>Class-level report: no student is named or listed.</p>")
    out.append("<p class='muted'>Engagement monitor: numbers only, no image of anyone is stored.</p></body></html>")
    return "\n".join(out) + "\n"
