"""The end-of-session report: pure functions over what shared/totals.py reads.

`build_report(store.load_session(sid), ...)` gives the JSON document (schema 1);
`render_text(report)` gives the text summary as the reference system wrote it (frames,
faces, count and percent of each level, then per student). With `class_level_only` no
per-student row, timeline entry or episode is included: only class-level counts and a
per-frame class timeline, which says when the class's attention fell without saying whose.
The teacher's marks of the session (shared/marks.py) come with the model's agreement with
them; class-level only keeps the agreement figures and drops the marks.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from itertools import groupby
from typing import Any

from shared.levels import LEVEL_LABELS
from shared.marks import Mark, report_section
from shared.model_card import BASELINE_NOTE
from shared.roster import several_streams, student_label
from shared.totals import empty_totals

REPORT_SCHEMA = 1
# The MQTT bridge splits what it forwards into AWS IoT Core's 128 KB payloads, at most 64
# parts (shared/envelope.py): 4 MB of report JSON leaves room for the parts'
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


def _when(entry: dict[str, Any]) -> float:
    """Position in the session: media time for files, capture time for live sources."""
    return entry["t_media"] if entry.get("t_media") is not None else entry["t_capture"]


def episodes(timeline: list[dict[str, Any]], min_level: int = EPISODE_LEVEL) -> list[dict[str, Any]]:
    """Per student, each run of consecutive predictions at `min_level` or above.

    A run ends at the student's next prediction below `min_level`; start and end are the
    first and last prediction of the run (capture time, and media time for files).
    """
    out = []
    # A student is (stream, id): ids start at 1 in every stream.
    by_student = sorted(timeline, key=lambda e: (e["stream"], e["student"], e["t_capture"], e["seq"]))
    for (stream, student), entries in groupby(by_student, key=lambda e: (e["stream"], e["student"])):
        run: list[dict[str, Any]] = []
        for entry in [*entries, None]:
            if entry is not None and entry["level"] >= min_level:
                run.append(entry)
                continue
            if run:
                out.append({"stream": stream, "student": student,
                            "start": run[0]["t_capture"], "end": run[-1]["t_capture"],
                            "start_media": run[0]["t_media"], "end_media": run[-1]["t_media"],
                            "predictions": len(run), "max_level": max(e["level"] for e in run)})
                run = []
    out.sort(key=lambda e: (e["start"], e["stream"], e["student"]))
    return out


def class_timeline(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per frame that had predictions: how many students were at each level."""
    frames: dict[tuple[str, int], dict[str, Any]] = {}
    for e in timeline:
        row = frames.setdefault((e["stream"], e["seq"]), {"stream": e["stream"], "seq": e["seq"],
                                                         "t_capture": e["t_capture"], "t_media": e["t_media"],
                                                         "levels": [0, 0, 0, 0]})
        row["levels"][e["level"]] += 1
    return sorted(frames.values(), key=lambda r: (r["t_capture"], r["seq"]))


def build_report(data: dict[str, Any], class_level_only: bool = False,
                 generated_at: float | None = None, marks: list[Mark] | None = None) -> dict[str, Any]:
    """The JSON report from `Store.load_session` output (and the session's teacher's marks)."""
    meta, totals = data["meta"], data["totals"]
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
        "class_timeline": class_timeline(data["timeline"]),
        "students": [],
        "timeline": [],
        "episodes": [],
    }
    if not class_level_only:
        report["students"] = [_with_percent(s) for s in data["students"]]
        report["timeline"] = data["timeline"]
        report["episodes"] = episodes(data["timeline"])
    report["streams"] = [_stream_section(st, report) for st in _streams_of(data)]
    report.update(report_section(marks or [], class_level_only, data["timeline"]))
    return report


def _streams_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The session's streams as Store.streams reads them; one from the meta for older data."""
    if data.get("streams"):
        return data["streams"]
    meta = data["meta"]
    return [{"stream": meta["stream"], "source": "", "started": meta["started"], "ended": meta["ended"],
             "end_reason": meta["end_reason"], "totals": data["totals"]}]


def _stream_section(stream: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """One stream of the class: its id, source, start, end and totals, and (unless class-level
    only) its students and episodes."""
    sid = stream["stream"]
    return {"stream": sid, "source": stream.get("source", ""), "started": stream.get("started"),
            "ended": stream.get("ended"), "end_reason": stream.get("end_reason", ""),
            "totals": _with_percent(stream.get("totals") or empty_totals()),
            "students": [s for s in report["students"] if s.get("stream", report["stream"]) == sid],
            "episodes": [e for e in report["episodes"] if e["stream"] == sid]}


def mqtt_body(report: dict[str, Any], limit: int = MQTT_BODY_LIMIT) -> dict[str, Any]:
    """The report as published over MQTT: whole when it fits, else without its longest lists.

    A long class has a timeline beyond what the bridge can carry; the totals, students and
    episodes still fit, and the full report stays on disk. "omitted" names what was left out.
    """
    if len(json.dumps(report, separators=(",", ":"))) <= limit:
        return report
    body = {**report, "omitted": []}
    for key in ("timeline", "class_timeline", "episodes"):
        body[key] = []
        body["omitted"].append(key)
        if key == "episodes":  # each stream's too
            body["streams"] = [{**st, "episodes": []} for st in body.get("streams") or []]
        if len(json.dumps(body, separators=(",", ":"))) <= limit:
            break
    return body


# --- text ---------------------------------------------------------------------------------

def _clock(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _offset(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours:02d}:{minutes:02d}:{secs:04.1f}"


def _moment(t_capture: float | None, t_media: float | None, started: float | None) -> str:
    """Media offset for files; for live sources the offset from the session's start."""
    if t_media is not None:
        return _offset(t_media)
    if t_capture is not None and started is not None:
        return _offset(t_capture - started)
    return "-"


def _level_lines(levels: dict[str, int], percent: dict[str, float], labels: list[str], indent: str) -> list[str]:
    return [f"{indent}{i} {labels[i]}: {levels[str(i)]} ({percent[str(i)]:.1f}%)" for i in range(len(labels))]


def _state_lines(counts: dict[str, Any], indent: str) -> list[str]:
    """One line per state of a multi-task model: its count at each level 0 (none) .. 3 (most), and percent.

    Levels only: the engagement labels ("slightly bored") would misname confusion or frustration.
    """
    return [f"{indent}{head}: " + ", ".join(f"level {level} {n} ({counts['states_percent'][head][level]:.1f}%)"
                                            for level, n in levels.items())
            for head, levels in counts.get("states", {}).items()]


def render_text(report: dict[str, Any]) -> str:
    labels, totals = report["model"]["labels"], report["totals"]
    several = several_streams(report)
    streams = ", ".join(st["stream"] for st in report["streams"]) if several else report["stream"]
    lines = [
        f"Engagement report for session {report['session']}",
        f"Class: {report['class']}    {'Streams' if several else 'Stream'}: {streams}",
        f"Model: {report['model']['name'] or 'unknown'}",
        *([f"Note: {BASELINE_NOTE}"] if report["model"]["baseline"] else []),
        f"Started: {_clock(report['started'])}    Ended: {_clock(report['ended'])}"
        + (f" ({report['end_reason']})" if report["end_reason"] else ""),
        "",
        f"Total frames: {totals['frames']}",
        f"Frames with no face found: {totals['frames_without_faces']}",
        f"Faces found: {totals['faces']}",
        f"Predictions: {totals['predictions']}",
        *_level_lines(totals["levels"], totals["percent"], labels, "  "),
        *(["Every state (multi-task model):", *_state_lines(totals, "  ")] if totals.get("states") else []),
    ]
    if several:  # one stream: its figures are the class's above
        for st in report["streams"]:
            lines += _stream_lines(st, labels)
    lines += _agreement_lines(report.get("agreement"))
    if report["class_level_only"]:
        lines += ["", "Class-level report: no per-student rows."]
        return "\n".join(lines) + "\n"
    started = report["started"]
    lines += ["", f"Students: {len(report['students'])}"]
    for s in report["students"]:
        stream = s.get("stream", report["stream"])
        who = student_label(stream, s["student"]) if several else f"id {s['student']}"
        who = f"{who} ({s['name']})" if s.get("name") else who
        lines += [f"{who}: {s['predictions']} predictions, first seen "
                  f"{_moment(s['first_seen'], s['first_media'], started)}, last seen "
                  f"{_moment(s['last_seen'], s['last_media'], started)}",
                  *_level_lines(s["levels"], s["percent"], labels, "    "),
                  *_state_lines(s, "    ")]
        mine = [e for e in report["episodes"] if (e.get("stream", stream), e["student"]) == (stream, s["student"])]
        for e in mine:
            lines.append(f"    level >= {EPISODE_LEVEL} from {_moment(e['start'], e['start_media'], started)} "
                         f"to {_moment(e['end'], e['end_media'], started)} ({e['predictions']} predictions, "
                         f"worst {e['max_level']} {labels[e['max_level']]})")
    if report.get("marks"):
        lines += ["", "Teacher's marks:"]
        for m in report["marks"]:
            model = "-" if m["level_predicted"] is None else f"{m['level_predicted']} {labels[m['level_predicted']]}"
            who = student_label(m["stream"], m["student"]) if several and m.get("stream") else f"id {m['student']}"
            lines.append(f"  {_moment(m['t'], m.get('t_media'), started)} {who}: teacher "
                         f"{m['level_given']} {labels[m['level_given']]}, model {model}")
    return "\n".join(lines) + "\n"


def _stream_lines(st: dict[str, Any], labels: list[str]) -> list[str]:
    totals = st["totals"]
    return ["", f"Stream {st['stream']}" + (f" ({st['source']})" if st.get("source") else "")
            + f": started {_clock(st['started'])}, ended {_clock(st['ended'])}"
            + (f" ({st['end_reason']})" if st.get("end_reason") else ""),
            f"  Frames: {totals['frames']}, no face: {totals['frames_without_faces']}, faces: {totals['faces']}, "
            f"predictions: {totals['predictions']}",
            *_level_lines(totals["levels"], totals["percent"], labels, "    ")]


def _agreement_lines(agreement: dict[str, Any] | None) -> list[str]:
    if not agreement or not (agreement["marks"] or agreement["without_prediction"]):
        return []
    rate = "-" if agreement["rate"] is None else f"{100 * agreement['rate']:.0f}%"
    return ["", f"Teacher's marks: {agreement['marks'] + agreement['without_prediction']}; the model agreed "
                f"with {agreement['agreed']} of the {agreement['marks']} it had a level for ({rate})"]
