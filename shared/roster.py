"""A class roster: display names for students, kept on the box.

A CSV file with a header and the columns `student,name`, or `stream,student,name` when a
class has several streams (a row without a stream applies to every stream). `student` is
the id the reports and the overlay show (in gallery mode: one per call tile, numbered in
the order the tiles were first seen, row by row).

Names go into the report files on this box only: never into MQTT payloads (so never to
the cloud), and nowhere at all with CLASS_LEVEL_ONLY=1 or EU_AI_ACT_MODE=1.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

MAX_NAME = 80


class RosterError(ValueError):
    """The roster file cannot be used; the message is one line naming the file and the row."""


Roster = dict[tuple[str, int], str]  # (stream or "", student) -> display name


def load_roster(path: str | Path) -> Roster:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RosterError(f"roster {path} cannot be read: {exc}") from None
    rows = csv.DictReader(text.splitlines())
    fields = {f.strip().lower() for f in rows.fieldnames or []}
    if not {"student", "name"} <= fields:
        raise RosterError(f"roster {path}: the first line must name the columns student,name "
                          f"(and optionally stream); it has {sorted(fields) or 'none'}")
    roster: Roster = {}
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if not any(row.values()):
            continue
        student, name = row.get("student", ""), row.get("name", "")
        if not student.isdigit() or int(student) < 1:
            raise RosterError(f"roster {path} line {line}: student {student!r} is not an id (1, 2, ...)")
        if not name or len(name) > MAX_NAME:
            raise RosterError(f"roster {path} line {line}: a name of 1 to {MAX_NAME} characters is needed")
        roster[(row.get("stream", ""), int(student))] = name
    return roster


def name_of(roster: Roster, stream: str, student: int) -> str | None:
    return roster.get((stream, student)) or roster.get(("", student))


def student_label(stream: str, student: int | str) -> str:
    """How reports name a student of a class with several streams (ids start at 1 in each);
    with one stream they keep their own "id <n>"."""
    return f"{stream} #{student}"


def several_streams(report: dict[str, Any]) -> bool:
    """Whether a report's class had several streams (its students are then named by stream)."""
    return len(report.get("streams") or []) > 1


def with_names(report: dict[str, Any], roster: Roster) -> dict[str, Any]:
    """A copy of the report whose student rows (the class's and each stream's) carry their
    display names (for the files on the box)."""
    if not roster or report.get("class_level_only"):
        return report
    stream = str(report.get("stream", ""))

    def named(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for s in rows:
            name = name_of(roster, str(s.get("stream", stream)), int(s["student"]))
            out.append({**s, "name": name} if name else s)
        return out

    streams = [{**st, "students": named(st.get("students") or [])} for st in report.get("streams") or []]
    return {**report, "students": named(report.get("students", [])),
            **({"streams": streams} if "streams" in report else {})}
