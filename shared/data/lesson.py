"""A lesson as a whole, from its report: the class line, the alerts and each student's time at
level 2 or more. Pure functions over the typed report (shared/data/report_doc.py, schema 1), so the session page, the
class page (/classes/<id>) and the printable summary say the same, after Redis forgot the
session.

The class line is the share of the class's predictions at each level, in equal slices of the
lesson: with several streams a slice pools every stream's frames, so it is the class's share,
not one camera's. Its shares add up to 1 in every slice that has a prediction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.data.clock import seconds_into
from shared.data.levels import LEVEL_LABELS, LEVELS
from shared.data.report_doc import UNSET, Episode, Report

CLASS_LINE_SLICES = 120  # a point every 30 s in an hour's lesson; enough for a page's width
ALERT_LEVEL = 2
DEFAULT_ALERT_SECONDS = 60.0  # ATTENTION_ALERT_SECONDS's default (shared/ops/config.py): for callers without settings
MAX_GAP_SECONDS = 2.0  # as the live cards: a longer gap (the student left the frame) counts as no time


def class_line(report: Report, slices: int = CLASS_LINE_SLICES) -> list[list[float]]:
    """[[seconds into the lesson (slice middle), share at 0, 1, 2, 3], ...], slices without a
    prediction left out."""
    at = [(seconds_into(r.t_capture, r.t_media, report.started), r.levels) for r in report.class_timeline]
    rows = [(t, levels) for t, levels in at if t is not None]
    if not rows:
        return []
    end = max(t for t, _ in rows)
    width = max(end / slices, 1e-6)
    sums = [[0] * LEVELS for _ in range(slices)]
    for t, levels in rows:
        cell = sums[min(slices - 1, int(t / width))]
        for i in range(LEVELS):
            cell[i] += int(levels[i]) if i < len(levels) else 0
    out = []
    for k, cell in enumerate(sums):
        total = sum(cell)
        if total:
            out.append([round((k + 0.5) * width, 2), *(n / total for n in cell)])
    return out


def episode_seconds(episode: Episode) -> float:
    """How long an episode lasted: media time for a file (as the reports say it), else capture time."""
    if episode.start_media is not None and episode.end_media is not None:
        return episode.end_media - episode.start_media
    return episode.end - episode.start


def alerts(report: Report, threshold_seconds: float) -> list[dict[str, Any]]:
    """The episodes (runs at level 2 or more) that lasted the threshold: the alerts the live page
    raised or would have raised, with where they start and are raised in the lesson."""
    started = report.started
    out = []
    for e in report.episodes:
        seconds = episode_seconds(e)
        if seconds < threshold_seconds:
            continue
        start = seconds_into(e.start, e.start_media, started)
        out.append({"stream": e.stream, "student": e.student,
                    "start": e.start, "end": e.end, "seconds": round(seconds, 1),
                    "worst_level": e.max_level, "start_offset": start,
                    "raised_offset": None if start is None else start + threshold_seconds,
                    "end_offset": seconds_into(e.end, e.end_media, started)})
    return out


def lesson(report: Report, threshold_seconds: float) -> dict[str, Any]:
    """The lesson as a whole: its class line, its alerts, and each student's time at level 2+
    (with their display name when the report has one)."""
    named = names(report)
    at2 = [{"stream": stream, "student": student, "seconds": seconds,
            **({"name": named[(stream, student)]} if (stream, student) in named else {})}
           for (stream, student), seconds in sorted(time_at_level_2_or_more(report).items())]
    found = alerts(report, threshold_seconds)
    for a in found:
        if (a["stream"], a["student"]) in named:
            a["name"] = named[(a["stream"], a["student"])]
    return {"session": report.session, "class": report.class_, "started": report.started,
            "labels": report.model.labels or list(LEVEL_LABELS),
            "attention_alert_seconds": threshold_seconds, "class_line": class_line(report), "alerts": found,
            "time_at_level_2_or_more": at2}


def names(report: Report) -> dict[tuple[str, int], str]:
    """(stream, student) -> display name, from the report's student rows (a roster's or the screen's)."""
    return {(report.stream if s.stream is UNSET else s.stream, s.student): s.name
            for s in report.students if s.name}


def time_at_level_2_or_more(report: Report) -> dict[tuple[str, int], float]:
    """Per student, seconds at level 2 or more, as the live cards count them (gaps capped)."""
    out: dict[tuple[str, int], float] = {}
    last: dict[tuple[str, int], tuple[float, int]] = {}
    for e in sorted(report.timeline, key=lambda e: (e.t_capture, e.seq)):
        key = (e.stream, e.student)
        t = seconds_into(e.t_capture, e.t_media, report.started)
        if t is None:
            continue
        out.setdefault(key, 0.0)
        if key in last and last[key][1] >= ALERT_LEVEL:
            out[key] += max(0.0, min(t - last[key][0], MAX_GAP_SECONDS))
        last[key] = (t, e.level)
    return {key: round(v, 1) for key, v in out.items()}


def student_label(report: Report, stream: str, student: int) -> str:
    """How a page names a student with no name: "id 4", or "cam1 #4" in a class of several streams."""
    return f"{stream} #{student}" if len(report.streams) > 1 else f"id {student}"


def compare_lessons(reports: Iterable[Report], threshold_seconds: float) -> dict[str, Any]:
    """Lessons of one class, oldest first: each lesson as a whole, and each student's time at
    level 2 or more lesson by lesson (None: not in that lesson). A student is followed across
    lessons by their display name; without one, by their id (which may be someone else next time).
    The reports are taken one at a time and only each one's lesson is kept: a term of hour-long
    lessons of an eight-face room is 20 reports of 28 MB each once read."""
    taken = []
    for report in reports:
        this = lesson(report, threshold_seconds)
        labels = [s.get("name") or student_label(report, s["stream"], s["student"])
                  for s in this["time_at_level_2_or_more"]]
        taken.append((report.started or 0, this, labels))
    taken.sort(key=lambda t: t[0])
    rows: dict[str, list[float | None]] = {}
    for k, (_, this, labels) in enumerate(taken):
        for label, s in zip(labels, this["time_at_level_2_or_more"], strict=True):
            rows.setdefault(label, [None] * len(taken))[k] = s["seconds"]
    students = [{"label": label, "seconds": seconds} for label, seconds in sorted(rows.items())]
    return {"lessons": [this for _, this, _ in taken], "students": students}
