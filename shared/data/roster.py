"""A class roster: display names for students, kept on the box.

A CSV file with a header and the columns `student,name`, or `stream,student,name` when a
class has several streams (a row without a stream applies to every stream). `student` is
the id the reports and the overlay show (in gallery mode: one per call tile, numbered in
the order the tiles were first seen, row by row). With GALLERY_NAMES=ocr facedetect reads
each call tile's name label; a roster with the columns `tile_name,name` then gives the display
name of whoever's tile reads `tile_name` (its letters and digits: case, accents, spaces and
punctuation do not matter), whatever id they got, and a student without a roster row is
shown by the name on their tile. facedetect keeps the labels read in Redis on this box
(`TileNames`), under the session's keys (which expire with them once the report is written).

Names go into the report files on this box only: never into MQTT payloads (so never to
the cloud), and nowhere at all with CLASS_LEVEL_ONLY=1 or EU_AI_ACT_MODE=1.
"""

from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

import msgspec
import redis

from shared.data.report_doc import UNSET, Report, Student

MAX_NAME = 80


class RosterError(ValueError):
    """The roster file cannot be used; the message is one line naming the file and the row."""


# (stream or "", student) -> display name, and ("", name key of a tile label) -> display name.
Roster = dict[tuple[str, int | str], str]
TileLabels = dict[tuple[str, int], str]  # (stream, student) -> the name label read on the tile


def name_key(text: str) -> str:
    """What identifies a name however it is typed or read: letters and digits, no accents or case."""
    plain = unicodedata.normalize("NFKD", text)
    return "".join(c for c in plain if c.isalnum() and not unicodedata.combining(c)).casefold()


def load_roster(path: str | Path) -> Roster:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RosterError(f"roster {path} cannot be read: {exc}") from None
    rows = csv.DictReader(text.splitlines())
    fields = {f.strip().lower() for f in rows.fieldnames or []}
    if "name" not in fields or not fields & {"student", "tile_name"}:
        raise RosterError(f"roster {path}: the first line must name the columns student,name "
                          f"(and optionally stream) or tile_name,name; it has {sorted(fields) or 'none'}")
    roster: Roster = {}
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if not any(row.values()):
            continue
        student, name, tile = row.get("student", ""), row.get("name", ""), row.get("tile_name", "")
        if not name or len(name) > MAX_NAME:
            raise RosterError(f"roster {path} line {line}: a name of 1 to {MAX_NAME} characters is needed")
        if tile and not student:
            if not name_key(tile):
                raise RosterError(f"roster {path} line {line}: tile_name {tile!r} has no letter or digit")
            roster[("", name_key(tile))] = name
            continue
        if not student.isdigit() or int(student) < 1:
            raise RosterError(f"roster {path} line {line}: student {student!r} is not an id (1, 2, ...)")
        if not name or len(name) > MAX_NAME:
            raise RosterError(f"roster {path} line {line}: a name of 1 to {MAX_NAME} characters is needed")
        roster[(row.get("stream", ""), int(student))] = name
    return roster


def name_of(roster: Roster, stream: str, student: int, tile_label: str | None = None) -> str | None:
    """The display name: the roster's for the tile's label, else for the id, else the label itself."""
    by_tile = roster.get(("", name_key(tile_label))) if tile_label else None
    return by_tile or roster.get((stream, student)) or roster.get(("", student)) or tile_label or None


class TileNames:
    """The name labels facedetect read on a session's call tiles, in Redis on this box."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix

    def _key(self, session: str, stream: str) -> str:
        # Under the session's keys: they expire with the session's totals once its report is written.
        return f"{self.prefix}:session:{session}:tilenames:{stream}"

    def save(self, session: str, stream: str, labels: dict[int, str]) -> None:
        if labels:
            self.r.hset(self._key(session, stream), mapping={str(s): n for s, n in labels.items()})

    def load(self, session: str, streams: list[str]) -> TileLabels:
        # One round trip for every stream: the web reads them twice a second (72 webcams were 144 reads).
        pipe = self.r.pipeline(transaction=False)
        for stream in streams:
            pipe.hgetall(self._key(session, stream))
        out: TileLabels = {}
        for stream, labels in zip(streams, pipe.execute() if streams else [], strict=True):
            for student, label in labels.items():
                out[(stream, int(student))] = label.decode() if isinstance(label, bytes) else str(label)
        return out


def student_label(stream: str, student: int | str) -> str:
    """How reports name a student of a class with several streams (ids start at 1 in each);
    with one stream they keep their own "id <n>"."""
    return f"{stream} #{student}"


def several_streams(report: Report) -> bool:
    """Whether a report's class had several streams (its students are then named by stream)."""
    return len(report.streams) > 1


def with_names(report: Report, roster: Roster, tile_labels: TileLabels | None = None) -> Report:
    """A copy of the report whose student rows (the class's and each stream's) carry their
    display names (for the files on the box)."""
    tile_labels = tile_labels or {}
    if not (roster or tile_labels) or report.class_level_only:
        return report

    def named(rows: list[Student]) -> list[Student]:
        out = []
        for s in rows:
            row_stream = report.stream if s.stream is UNSET else s.stream
            name = name_of(roster, row_stream, s.student, tile_labels.get((row_stream, s.student)))
            out.append(msgspec.structs.replace(s, name=name) if name else s)
        return out

    streams = [msgspec.structs.replace(st, students=named(st.students)) for st in report.streams]
    return msgspec.structs.replace(report, students=named(report.students), streams=streams)
