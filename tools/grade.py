"""How well a report agrees with a sample's ground truth: `engagement grade <report> <truth>`.

`engagement make-sample` writes `<video>.truth.json` beside the video (tools/sample_video.py):
each face, where it sits, and each scripted stretch (turned away, looking down at a phone,
...) with its level. This grades the report of `engagement run` on that video against it,
measuring rather than assuming:

- each prediction is matched to the truth's face by where its box sits, not by the student
  id: a face split into two students, or two students whose ids swap, show as such ("face 2:
  student 2 (13), student 4 (21)") and the face is graded on all its predictions;
- each scripted stretch is found when a prediction of its face reaches the stretch's level
  between its start and its end plus EASE seconds (a smoothed level lags the head), and the
  reported times are those of the runs at that level which overlap it;
- a run at level 2 or more that overlaps no scripted stretch of level 2 or more is a false
  alarm;
- each time the faces leave the frame (the truth's `absent`) is found when no prediction of
  the face falls inside it; the report's times are its last prediction before and first after;
- agreement: the share of the faces' predictions whose "level 2 or more" matches the truth's
  at that moment, leaving out predictions within EASE of a scripted change (the head is
  still turning there, and either answer is fair); a prediction while the face is away is
  a disagreement.

The report argument may be a report's .json, or a folder of reports (its newest is graded).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from shared.data.clock import offset_clock
from shared.data.report_doc import Report, ReportError, TimelineEntry, load_report
from shared.ops.command_parser import CommandParser

EASE = 1.0  # seconds a smoothed level may lag a scripted change at either end
DISENGAGED = 2  # the report's episodes: level 2 or more


class Seen(NamedTuple):
    """A prediction placed in the media (a file source's): the report's timeline entry, and its time there."""

    entry: TimelineEntry
    t_media: float

    @property
    def level(self) -> int:
        return self.entry.level


def _centre(box: list[int | float]) -> tuple[float, float]:
    x, y, w, h = box[:4]
    return x + w / 2, y + h / 2


def face_of(entry: TimelineEntry, truth: dict[str, Any]) -> int | None:
    """The truth's face a prediction is of: the one whose box centre is nearest the prediction's,
    within one face width (None: on no face, or no box)."""
    if not entry.box or not truth["faces"]:
        return None
    cx, cy = _centre(entry.box)

    def distance(face: dict[str, Any]) -> float:
        fx, fy = _centre(face["box"])
        return ((fx - cx) ** 2 + (fy - cy) ** 2) ** 0.5

    best = min(truth["faces"], key=distance)
    return best["face"] if distance(best) <= best["box"][2] else None


def _runs(entries: list[Seen], level: int) -> list[list[Seen]]:
    """Consecutive predictions (in media time) at `level` or above."""
    runs: list[list[Seen]] = []
    current: list[Seen] = []
    for e in entries:
        if e.level >= level:
            current.append(e)
        elif current:
            runs.append(current)
            current = []
    return [*runs, current] if current else runs


def _overlaps(run: list[Seen], start: float, end: float) -> bool:
    return run[0].t_media <= end and run[-1].t_media >= start


def _scripted_level(face: dict[str, Any], t: float) -> int:
    return max((s["level"] for s in face["stretches"] if s["start"] <= t <= s["end"]), default=0)


def _near_change(face: dict[str, Any], t: float, ease: float) -> bool:
    return any(abs(t - edge) < ease for s in face["stretches"] for edge in (s["start"], s["end"]))


def _stretches(face: dict[str, Any], mine: list[Seen], ease: float) -> list[dict[str, Any]]:
    """Each scripted stretch of the face: found or not, and the report's runs at its level over it."""
    out = []
    for s in face["stretches"]:
        inside = [e for e in mine if s["start"] <= e.t_media <= s["end"] + ease]
        runs = [r for r in _runs(mine, s["level"]) if _overlaps(r, s["start"], s["end"] + ease)]
        hits = [e for e in inside if e.level >= s["level"]]
        out.append({"face": face["face"], "state": s["state"], "level": s["level"], "start": s["start"],
                    "end": s["end"], "found": bool(hits),
                    "reported": [[r[0].t_media, r[-1].t_media] for r in runs],
                    "predictions": len(inside), "at_level": len(hits)})
    return out


def _false_alarms(face: dict[str, Any], mine: list[Seen], ease: float) -> list[dict[str, Any]]:
    """The face's runs at level 2 or more that overlap no scripted stretch of that level."""
    scripted = [s for s in face["stretches"] if s["level"] >= DISENGAGED]
    return [{"face": face["face"], "start": r[0].t_media, "end": r[-1].t_media, "predictions": len(r)}
            for r in _runs(mine, DISENGAGED)
            if not any(_overlaps(r, s["start"] - ease, s["end"] + ease) for s in scripted)]


def _absences(face: dict[str, Any], mine: list[Seen], absent: list[list[float]]) -> list[dict[str, Any]]:
    """Each time the face was out of the frame: found when none of its predictions falls inside."""
    out = []
    for start, end in absent:
        inside = [e for e in mine if start < e.t_media < end]
        before = [e.t_media for e in mine if e.t_media <= start]
        after = [e.t_media for e in mine if e.t_media >= end]
        out.append({"face": face["face"], "start": start, "end": end, "found": not inside,
                    "last_before": before[-1] if before else None, "first_after": after[0] if after else None,
                    "predictions": len(inside)})
    return out


def _agreement(face: dict[str, Any], mine: list[Seen], absent: list[list[float]],
               ease: float) -> tuple[int, int]:
    """(agreed, counted): level 2 or more, or not, against the truth; away counts as wrong."""
    agreed = counted = 0
    for e in mine:
        away = any(start < e.t_media < end for start, end in absent)
        if not away and _near_change(face, e.t_media, ease):
            continue
        counted += 1
        agreed += not away and (e.level >= DISENGAGED) == (_scripted_level(face, e.t_media) >= DISENGAGED)
    return agreed, counted


def grade(report: Report, truth: dict[str, Any], ease: float = EASE) -> dict[str, Any]:
    """Stretches and times away found or missed (with scripted and reported times), false alarms, agreement."""
    timeline = [Seen(e, e.t_media) for e in report.timeline if e.t_media is not None]
    on_face = [(face_of(e.entry, truth), e) for e in timeline]
    absent = truth.get("absent") or []
    students = sorted({(e.stream, e.student) for e in report.timeline})
    several = len({st for st, _ in students}) > 1

    def name(key: tuple[str, int]) -> str:  # as the text report names a student
        return f"{key[0]}/{key[1]}" if several else str(key[1])

    stretches, alarms, absences, students_on_faces = [], [], [], {}
    agreed = counted = 0
    for face in truth["faces"]:
        mine = sorted((e for f, e in on_face if f == face["face"]), key=lambda e: e.t_media)
        seen = Counter((e.entry.stream, e.entry.student) for e in mine)
        students_on_faces[str(face["face"])] = {name(k): n for k, n in sorted(seen.items())}
        stretches += _stretches(face, mine, ease)
        alarms += _false_alarms(face, mine, ease)
        absences += _absences(face, mine, absent)
        a, c = _agreement(face, mine, absent, ease)
        agreed, counted = agreed + a, counted + c
    placed = {(e.entry.stream, e.entry.student) for f, e in on_face if f is not None}
    return {"faces": len(truth["faces"]), "students": len(students), "students_on_faces": students_on_faces,
            "strangers": [name(k) for k in students if k not in placed],
            "off_face_predictions": sum(f is None for f, _ in on_face),
            "stretches": stretches, "found": sum(s["found"] for s in stretches),
            "absences": absences, "absences_found": sum(a["found"] for a in absences),
            "false_alarms": alarms, "agreed": agreed, "counted": counted,
            "agreement": agreed / counted if counted else None, "ease": ease}


def _span(start: float, end: float) -> str:
    return f"{offset_clock(start)}-{offset_clock(end)}"


def render(result: dict[str, Any], truth_name: str = "the truth") -> str:
    lines = [f"Graded against {truth_name}: {result['faces']} face(s), {result['students']} student(s) in the report"]
    for face, students in result["students_on_faces"].items():
        named = [f"student {s}" if len(students) == 1 else f"student {s} ({n} predictions)"
                 for s, n in students.items()]
        lines.append(f"  face {face}: " + (", ".join(named) or "no student"))
    moved = sorted({s for students in result["students_on_faces"].values() for s in students
                    if sum(s in other for other in result["students_on_faces"].values()) > 1}, key=str)
    if moved:
        lines.append(f"  students seen on more than one face (ids swapped or merged): {', '.join(moved)}")
    if result["strangers"]:
        lines.append(f"  students on no face of the truth: {', '.join(result['strangers'])}")
    for s in result["stretches"]:
        reported = ", ".join(_span(a, b) for a, b in s["reported"]) or "-"
        verdict = "found " if s["found"] else "MISSED"
        lines.append(f"  {verdict} face {s['face']} {s['state']} (level {s['level']}): scripted "
                     f"{_span(s['start'], s['end'])}, reported {reported} "
                     f"({s['at_level']} of {s['predictions']} predictions at level {s['level']} or more)")
    for a in result.get("absences") or []:
        seen = f"last prediction {offset_clock(a['last_before'])}, next {offset_clock(a['first_after'])}"
        lines.append(f"  {'found ' if a['found'] else 'MISSED'} face {a['face']} left the frame: scripted "
                     f"{_span(a['start'], a['end'])}, {seen} ({a['predictions']} predictions while away)")
    for a in result["false_alarms"]:
        lines.append(f"  NOT SCRIPTED face {a['face']}: level {DISENGAGED} or more {_span(a['start'], a['end'])} "
                     f"({a['predictions']} predictions)")
    rate = "-" if result["agreement"] is None else f"{100 * result['agreement']:.0f}%"
    within = sum(s["predictions"] for s in result["stretches"])
    at_level = sum(s["at_level"] for s in result["stretches"])
    if within:  # how much of each stretch the report had, not only whether it had some
        lines.append(f"Inside the scripted stretches: {at_level} of {within} predictions at the scripted level "
                     f"({100 * at_level / within:.0f}%)")
    lines.append(f"Stretches found: {result['found']} of {len(result['stretches'])}; times away found: "
                 f"{result['absences_found']} of {len(result['absences'])}; false alarms: "
                 f"{len(result['false_alarms'])}; agreement with the truth (level {DISENGAGED} or more, or not): "
                 f"{result['agreed']} of {result['counted']} predictions ({rate}), leaving out those within "
                 f"{result['ease']:g} s of a scripted change")
    return "\n".join(lines) + "\n"


def _newest_report(folder: Path) -> Path | None:
    reports = [p for p in folder.glob("*.json") if not p.name.startswith(".")]
    return max(reports, key=lambda p: p.stat().st_mtime, default=None)


def _read_report(path: Path) -> Report:
    """The report, or ValueError with one line saying what is wrong."""
    try:
        return load_report(path)
    except OSError as exc:
        raise ValueError(f"report {path} cannot be read ({exc.strerror or exc})") from None
    except (ReportError, msgspec.DecodeError) as exc:
        raise ValueError(f"report {path}: {exc}") from None


def _read(path: Path, what: str) -> dict[str, Any]:
    """A JSON document, or ValueError with one line saying what is wrong."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{what} {path} cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ValueError(f"{what} {path} is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{what} {path} is not a JSON object")
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="engagement grade",
                                     description="How well a report agrees with a sample's ground truth "
                                                 "(engagement make-sample writes <video>.truth.json).")
    parser.add_argument("report", help="the report's .json, or a folder of reports (its newest is graded)")
    parser.add_argument("truth", help="the sample's .truth.json")
    parser.add_argument("--ease", type=float, default=EASE,
                        help=f"seconds a level may lag a scripted change (default {EASE:g})")
    parser.add_argument("--json", action="store_true", help="print the grade as JSON")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a scripted stretch or time away is missed, or a stretch is reported "
                             "that was not scripted")
    args = parser.parse_args(argv)
    path = Path(args.report)
    if path.is_dir():
        newest = _newest_report(path)
        if newest is None:
            print(f"engagement grade: no report in {path}", file=sys.stderr)
            return 2
        path = newest
    try:
        report, truth = _read_report(path), _read(Path(args.truth), "truth")
        if not isinstance(truth.get("faces"), list) or report.class_level_only:
            raise ValueError(f"{args.truth} is not a sample's truth, or {path} not a report with a timeline "
                             "(a class-level report names no student to grade)")
        result = grade(report, truth, args.ease)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"engagement grade: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1) if args.json else f"report {path}\n" + render(result, Path(args.truth).name),
          end="" if not args.json else "\n")
    failed = (result["found"] < len(result["stretches"]) or result["absences_found"] < len(result["absences"])
              or result["false_alarms"])
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
