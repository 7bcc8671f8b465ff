"""The end-of-session report: pure functions over what shared/data/totals.py reads.

`build_report(store.load_session(sid), ...)` gives the JSON document (schema 1);
`render_text(report)` gives the text summary as the reference system wrote it (frames,
faces, count and percent of each level, then per student). With `class_level_only` no
per-student row, timeline entry or episode is included: only class-level counts and a
per-frame class timeline, which says when the class's attention fell without saying whose.
The teacher's marks of the session (shared/data/marks.py) come with the model's agreement with
them; class-level only keeps the agreement figures and drops the marks.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from shared.data.clock import offset_clock, seconds_into, wall_clock
from shared.data.levels import LEVEL_LABELS, UNREAD_REASON
from shared.data.marks import Mark, report_section
from shared.data.model_card import BASELINE_NOTE
from shared.data.report_doc import (
    TIMELINE_CHUNK,
    UNSET,
    Agreement,
    Report,
    SetAside,
    StoreSection,
    StreamSection,
    Student,
    Totals,
    from_dict,
    timeline_of,
)
from shared.data.roster import several_streams, student_label
from shared.data.timeline_columns import RawTimeline, TimelineColumns
from shared.data.totals import SET_ASIDE_REASONS, empty_totals

REPORT_SCHEMA = 1
# The MQTT bridge splits what it forwards into AWS IoT Core's 128 KB payloads, at most 64
# parts (shared/data/envelope.py): 4 MB of report JSON leaves room for the parts'
# escaping and headers.
MQTT_BODY_LIMIT = 4_000_000
EPISODE_LEVEL = 2  # "bored" or worse


def _percent(levels: dict[str, int], total: int) -> dict[str, float]:
    return {k: round(100.0 * v / total, 1) if total else 0.0 for k, v in levels.items()}


def _with_percent(counts: dict[str, Any]) -> dict[str, Any]:
    """Totals (or a student's) with percentages; a multi-task model's states get theirs too."""
    out = {**counts, "percent": _percent(counts["levels"], counts["predictions"])}
    if counts.get("states"):
        out["states_percent"] = {h: _percent(v, counts["predictions"]) for h, v in counts["states"].items()}
    return out


def episodes(timeline: TimelineColumns, min_level: int = EPISODE_LEVEL) -> list[dict[str, Any]]:
    """Per student, each run of consecutive predictions at `min_level` or above.

    A run ends at the student's next prediction below `min_level`; start and end are the
    first and last prediction of the run (capture time, and media time for files).
    """
    c = timeline
    if not len(c):
        return []
    # A student is (stream, id): ids start at 1 in every stream. Rows by student, then capture time and seq.
    order = np.lexsort((c.seq, c.t_capture, c.student, c.stream))
    stream, student, level = c.stream[order], c.student[order], c.level[order]
    high = level >= min_level
    goes_on = np.zeros(len(order), bool)  # this row is high, and so was the previous one, of the same student
    goes_on[1:] = high[1:] & high[:-1] & (stream[1:] == stream[:-1]) & (student[1:] == student[:-1])
    starts = np.flatnonzero(high & ~goes_on)
    ends = np.flatnonzero(high & ~np.append(goes_on[1:], False))
    # Between a run's end and the next run's start no row is high: the max over that stretch is the run's.
    peaks: list[int] = np.maximum.reduceat(np.where(high, level, -1), starts).tolist() if len(starts) else []
    out = []
    for a, b, peak in zip(starts.tolist(), ends.tolist(), peaks, strict=True):
        first, last = int(order[a]), int(order[b])
        out.append({"stream": c.streams[int(c.stream[first])], "student": int(c.student[first]),
                    "start": float(c.t_capture[first]), "end": float(c.t_capture[last]),
                    "start_media": c.media(first), "end_media": c.media(last),
                    "predictions": b - a + 1, "max_level": int(peak)})
    out.sort(key=lambda e: (e["start"], e["stream"], e["student"]))
    return out


def class_timeline(timeline: TimelineColumns) -> list[dict[str, Any]]:
    """Per frame that had predictions: how many students were at each level."""
    c = timeline
    if not len(c):
        return []
    frame = c.stream.astype(np.int64) * (int(c.seq.max()) + 1) + c.seq  # one number a (stream, seq)
    _, first, which = np.unique(frame, return_index=True, return_inverse=True)
    levels = np.zeros((len(first), 4), np.int64)
    np.add.at(levels, (which, c.level.astype(np.int64)), 1)
    rows = [{"stream": c.streams[int(c.stream[i])], "seq": int(c.seq[i]), "t_capture": float(c.t_capture[i]),
             "t_media": c.media(i), "levels": counts}
            for i, counts in sorted(zip(first.tolist(), levels.tolist(), strict=True))]  # in the timeline's order
    return sorted(rows, key=lambda r: (r["t_capture"], r["seq"]))


def reason_counts(timeline: TimelineColumns) -> dict[str, int]:
    """How many predictions each signal decided (the baseline's `reason`); class level, names no student."""
    counts = np.bincount(timeline.reason[timeline.reason >= 0], minlength=len(timeline.reasons))
    return {name: int(n) for name, n in zip(timeline.reasons, counts.tolist(), strict=True) if n}


def build_report(data: dict[str, Any], class_level_only: bool = False,
                 generated_at: float | None = None, marks: list[Mark] | None = None) -> Report:
    """The report from `Store.load_session` output (and the session's teacher's marks).

    Built as the plain document (the JSON file's keys, in its order), then checked into the
    typed Report (shared/data/report_doc.py) that every writer and reader takes. The timeline's
    TimelineEntry Structs are held as they are, never copied; a long class's RawTimeline (as
    Store.load_session reads it) is not in the Report: its writers take it beside (report_chunks, mqtt_body)."""
    meta, totals = data["meta"], data["totals"]
    raw = data["timeline"] if isinstance(data["timeline"], RawTimeline) else None
    entries = [] if raw is not None else timeline_of(data["timeline"])
    timeline = raw.columns if raw is not None else TimelineColumns.of(entries)
    students = [] if class_level_only else [_with_percent(s) for s in data["students"]]
    found = [] if class_level_only else episodes(timeline)
    model = dict(meta["model"])
    labels = model.get("labels") or list(LEVEL_LABELS)
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "session": meta["session"],
        "class": meta["class"],
        "stream": meta["stream"],
        "model": {"name": model.get("name", ""), "kind": model.get("kind", ""),
                  "baseline": bool(model.get("baseline")), "affect": bool(model.get("affect")), "labels": labels,
                  "engine": model.get("engine", ""), "device": model.get("device", "")},
        "note": BASELINE_NOTE if model.get("baseline") else "",
        "started": meta["started"],
        "ended": meta["ended"],
        "end_reason": meta["end_reason"],
        "generated_at": generated_at,
        "class_level_only": class_level_only,
        "totals": _with_percent(totals),
        "class_timeline": class_timeline(timeline),
        "reasons": reason_counts(timeline),
        "students": students,
        "timeline": [] if class_level_only else entries,
        "episodes": found,
        "streams": [_stream_section(st, students, found, meta["stream"]) for st in _streams_of(data)],
        "set_aside": set_aside_section(data.get("set_aside") or {}),
        **report_section(marks or [], class_level_only, timeline),
    }
    return from_dict(report)


def set_aside_section(raw: dict[str, Any]) -> dict[str, Any]:
    """Detections facedetect never made students of (Store.set_aside), with their total."""
    counts = {reason: int(raw.get(reason, 0)) for reason in SET_ASIDE_REASONS}
    return {**counts, "total": sum(counts.values()), "min_seconds": raw.get("min_seconds")}


def _set_aside_line(section: SetAside) -> str:
    if not section.total:
        return "Detections set aside: none"
    parts = []
    if section.short_lived:
        seconds = section.min_seconds
        parts.append(f"{section.short_lived} short-lived"
                     + (f" (seen under {seconds:g} s)" if seconds is not None else ""))
    if section.not_a_face:
        parts.append(f"{section.not_a_face} not a face to the face mesh, as a hand raised to the face")
    return f"Detections set aside, never students: {section.total} ({'; '.join(parts)})"


def _streams_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The session's streams as Store.streams reads them; one from the meta for older data."""
    if data.get("streams"):
        streams: list[dict[str, Any]] = data["streams"]
        return streams
    meta = data["meta"]
    return [{"stream": meta["stream"], "source": "", "started": meta["started"], "ended": meta["ended"],
             "end_reason": meta["end_reason"], "totals": data["totals"]}]


def _stream_section(stream: dict[str, Any], students: list[dict[str, Any]], found: list[dict[str, Any]],
                    default_stream: str) -> dict[str, Any]:
    """One stream of the class: its id, source, start, end and totals, and (unless class-level
    only) its students and episodes (a student row without a stream is of `default_stream`)."""
    sid = stream["stream"]
    return {"stream": sid, "source": stream.get("source", ""), "started": stream.get("started"),
            "ended": stream.get("ended"), "end_reason": stream.get("end_reason", ""),
            "totals": _with_percent(stream.get("totals") or empty_totals()),
            "students": [s for s in students if s.get("stream", default_stream) == sid],
            "episodes": [e for e in found if e["stream"] == sid]}


def raw_timeline(data: dict[str, Any], class_level_only: bool = False) -> RawTimeline | None:
    """The timeline the report's writers take beside it (report_chunks, mqtt_body): a long class's RawTimeline
    from `Store.load_session`; None when the Report holds its timeline (or has none: class level only)."""
    timeline = data["timeline"]
    return timeline if isinstance(timeline, RawTimeline) and not class_level_only else None


def mqtt_body(report: Report, limit: int = MQTT_BODY_LIMIT, raw: RawTimeline | None = None) -> Report:
    """The report as published over MQTT: whole when it fits, else without its longest lists.

    A long class has a timeline beyond what the bridge can carry; the totals, students and
    episodes still fit, and the full report stays on disk. "omitted" names what was left out.
    `raw`: the report's timeline when it is a long class's RawTimeline (not in `report`).
    """
    if raw is not None and len(raw):
        if compact_size(report, limit) + _raw_size(raw.raw, limit) <= limit:
            return msgspec.structs.replace(report, timeline=raw.entries())
    elif compact_size(report, limit) <= limit:
        return report
    body = msgspec.structs.replace(report, omitted=[])
    omitted: list[str] = []
    for key in ("timeline", "class_timeline", "episodes"):
        setattr(body, key, [])
        omitted.append(key)
        body.omitted = list(omitted)
        if key == "episodes":  # each stream's too
            body.streams = [msgspec.structs.replace(st, episodes=[]) for st in body.streams]
        if compact_size(body, limit) <= limit:
            break
    return body


def compact_size(report: Report, limit: int | None = None) -> int:
    """The report's length as json.dumps writes it compactly (ASCII escapes: what the bridge counts).
    Encoded from the Structs, not through dicts (280 MB more for an hour of a 7x7 gallery), the timeline
    TIMELINE_CHUNK entries at a time; once past `limit` the count stops (the body is too long: by how much
    is not needed, and the rest of a long class's timeline is not encoded for it)."""
    if len(report.timeline) <= TIMELINE_CHUNK:
        return _escaped_size(msgspec.json.encode(report))
    size = _escaped_size(msgspec.json.encode(msgspec.structs.replace(report, timeline=[])))
    for start in range(0, len(report.timeline), TIMELINE_CHUNK):
        chunk = msgspec.json.encode(report.timeline[start:start + TIMELINE_CHUNK])
        size += _escaped_size(chunk) - 2 + (1 if start else 0)  # its brackets off; a comma after the last chunk
        if limit is not None and size > limit:
            break
    return size


def _raw_size(entries: list[bytes], limit: int) -> int:
    """What entries' JSON adds to a report's empty timeline (their commas too); the count stops past `limit`."""
    size = -1
    for entry in entries:
        size += _escaped_size(entry) + 1
        if size > limit:
            break
    return max(0, size)


def _escaped_size(encoded: bytes) -> int:
    """The length of msgspec's UTF-8 JSON with every character beyond ASCII a \\uXXXX escape (two for one
    beyond the BMP), as json.dumps writes it."""
    if encoded.isascii():
        return len(encoded)
    wide = [c for c in encoded.decode() if ord(c) > 127]
    return len(encoded) + sum((12 if ord(c) > 0xFFFF else 6) - len(c.encode()) for c in wide)


# --- text ---------------------------------------------------------------------------------

def _moment(t_capture: float | None, t_media: float | None, started: float | None) -> str:
    """Media offset for files; for live sources the offset from the session's start (mm:ss.s)."""
    return offset_clock(seconds_into(t_capture, t_media, started))


def _level_lines(levels: dict[str, int], percent: dict[str, float], labels: list[str], indent: str) -> list[str]:
    return [f"{indent}{i} {labels[i]}: {levels[str(i)]} ({percent[str(i)]:.1f}%)" for i in range(len(labels))]


def _state_lines(counts: Totals | Student, indent: str) -> list[str]:
    """One line per state of a multi-task model: its count at each level 0 (none) .. 3 (most), and percent.

    Levels only: the engagement labels ("slightly bored") would misname confusion or frustration.
    """
    if counts.states is UNSET or counts.states_percent is UNSET:
        return []
    percent = counts.states_percent
    return [f"{indent}{head}: " + ", ".join(f"level {level} {n} ({percent[head][level]:.1f}%)"
                                            for level, n in levels.items())
            for head, levels in counts.states.items()]


def _stream_of(student: Student, default: str) -> str:
    """A student's stream (rows written before several streams carry none: the report's)."""
    return default if student.stream is UNSET else student.stream


def render_text(report: Report) -> str:
    labels, totals = report.model.labels, report.totals
    several = several_streams(report)
    streams = ", ".join(st.stream for st in report.streams) if several else report.stream
    lines = [
        f"Engagement report for session {report.session}",
        f"Class: {report.class_}    {'Streams' if several else 'Stream'}: {streams}",
        f"Model: {report.model.name or 'unknown'}",
        *([f"Note: {BASELINE_NOTE}"] if report.model.baseline else []),
        f"Started: {wall_clock(report.started)}    Ended: {wall_clock(report.ended)}"
        + (f" ({report.end_reason})" if report.end_reason else ""),
        *_store_lines(None if report.store is UNSET else report.store),
        "",
        f"Total frames: {totals.frames}",
        f"Frames with no face found: {totals.frames_without_faces}",
        f"Faces found: {totals.faces}",
        _set_aside_line(report.set_aside),
        f"Predictions: {totals.predictions}",
        *_unread_lines(report.reasons),
        *_level_lines(totals.levels, totals.percent, labels, "  "),
        *(["Every state (multi-task model):", *_state_lines(totals, "  ")] if totals.states else []),
    ]
    if several:  # one stream: its figures are the class's above
        for st in report.streams:
            lines += _stream_lines(st, labels)
    lines += _agreement_lines(report.agreement)
    if report.class_level_only:
        lines += ["", "Class-level report: no per-student rows."]
        return "\n".join(lines) + "\n"
    lines += ["", f"Students: {len(report.students)}"]
    for s in report.students:
        lines += _student_lines(report, s, several, labels)
    lines += _mark_lines(report, several, labels)
    return "\n".join(lines) + "\n"


def _student_lines(report: Report, s: Student, several: bool, labels: list[str]) -> list[str]:
    """A student's predictions, first and last seen, levels, states and episodes."""
    started = report.started
    stream = _stream_of(s, report.stream)
    who = student_label(stream, s.student) if several else f"id {s.student}"
    who = f"{who} ({s.name})" if s.name else who
    lines = [f"{who}: {s.predictions} predictions, first seen "
             f"{_moment(s.first_seen, s.first_media, started)}, last seen "
             f"{_moment(s.last_seen, s.last_media, started)}",
             *_level_lines(s.levels, s.percent, labels, "    "),
             *_state_lines(s, "    ")]
    for e in report.episodes:
        if (e.stream, e.student) != (stream, s.student):
            continue
        lines.append(f"    level >= {EPISODE_LEVEL} from {_moment(e.start, e.start_media, started)} "
                     f"to {_moment(e.end, e.end_media, started)} ({e.predictions} predictions, "
                     f"worst {e.max_level} {labels[e.max_level]})")
    return lines


def _mark_lines(report: Report, several: bool, labels: list[str]) -> list[str]:
    if not report.marks:
        return []
    lines = ["", "Teacher's marks:"]
    for m in report.marks:
        model = "-" if m.level_predicted is None else f"{m.level_predicted} {labels[m.level_predicted]}"
        who = student_label(m.stream, m.student) if several and m.stream else f"id {m.student}"
        t_media = None if m.t_media is UNSET else m.t_media
        lines.append(f"  {_moment(m.t, t_media, report.started)} {who}: teacher "
                     f"{m.level_given} {labels[m.level_given]}, model {model}")
    return lines


def _store_lines(store: StoreSection | None) -> list[str]:
    """Where the figures come from when not simply Redis (services/reporter/class_source.py)."""
    if not store:
        return []
    missing = "; ".join(store.missing) or "nothing"
    return [f"Figures: {store.note}", f"Missing: {missing}"]


def _unread_lines(reasons: dict[str, int]) -> list[str]:
    """Faces found but not read are not "frames with no face": say how many, and at which level."""
    unread = reasons.get(UNREAD_REASON, 0)
    return [f"  of which faces the face mesh could not read (reason {UNREAD_REASON}, counted at level 3): "
            f"{unread}"] if unread else []


def _stream_lines(st: StreamSection, labels: list[str]) -> list[str]:
    totals = st.totals
    return ["", f"Stream {st.stream}" + (f" ({st.source})" if st.source else "")
            + f": started {wall_clock(st.started)}, ended {wall_clock(st.ended)}"
            + (f" ({st.end_reason})" if st.end_reason else ""),
            f"  Frames: {totals.frames}, no face: {totals.frames_without_faces}, faces: {totals.faces}, "
            f"predictions: {totals.predictions}",
            *_level_lines(totals.levels, totals.percent, labels, "    ")]


def _agreement_lines(agreement: Agreement) -> list[str]:
    if not (agreement.marks or agreement.without_prediction):
        return []
    rate = "-" if agreement.rate is None else f"{100 * agreement.rate:.0f}%"
    return ["", f"Teacher's marks: {agreement.marks + agreement.without_prediction}; the model agreed "
                f"with {agreement.agreed} of the {agreement.marks} it had a level for ({rate})"]
