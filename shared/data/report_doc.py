"""The class report document (services/reporter/report.py `build_report`) as typed Structs.

One Struct per part of the report, fields in the order the JSON file has its keys, so a report
encodes to the same JSON as the dict it replaced. A key the old dict left out when it had
nothing to say (a student's `name`, the `store` section, `omitted`, a timeline entry's `box`
...) is `UNSET` here and stays out of the file. Every other field is required, `None` included:
`omit_defaults=True` only ever drops UNSET, as no field has another default. The model is the
messages' own Struct (shared/data/model_info.py): its fields have defaults, and it writes them all.

Readers call `load_report(path_or_bytes)` (or `load_report_head(path)` for a list's row);
writers call `report_bytes(report)` / `report_json(report)` (the file's formatting, encoded from
the Structs: `json.dumps(indent=1)`'s layout, byte for byte but for text beyond ASCII, now UTF-8)
or `to_dict(report)` (plain dicts and lists, for code not converted yet and for the MQTT body).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from shared.data.model_info import ModelInfo

__all__ = ["UNSET", "Agreement", "ClassFrame", "Episode", "MarkRow", "Report", "ReportError",
           "SetAside", "StoreSection", "StreamSection", "Student", "TimelineEntry", "Totals", "from_dict",
           "load_report", "report_bytes", "report_chunks", "report_json", "timeline_of", "to_dict"]


class _Part(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every part: keyword-only (a required field may follow an optional one, as in the file)."""


class Totals(_Part, kw_only=True):
    """The class's (or a stream's) counts: frames, faces, predictions, per level, and percentages."""
    frames: int
    frames_without_faces: int
    faces: int
    predictions: int
    levels: dict[str, int]
    states: dict[str, dict[str, int]] | UnsetType = UNSET  # a multi-task model's heads
    percent: dict[str, float]
    states_percent: dict[str, dict[str, float]] | UnsetType = UNSET


class Student(_Part, kw_only=True):
    """One student of one stream (ids start at 1 in every stream)."""
    stream: str | UnsetType = UNSET  # absent in sessions written before several streams
    student: int
    predictions: int
    levels: dict[str, int]
    first_seen: float | None
    last_seen: float | None
    first_media: float | None
    last_media: float | None
    states: dict[str, dict[str, int]] | UnsetType = UNSET
    percent: dict[str, float]
    states_percent: dict[str, dict[str, float]] | UnsetType = UNSET
    name: str | UnsetType = UNSET  # the display name (roster or call tile), files on the box only


class ClassFrame(_Part, kw_only=True):
    """One frame that had predictions: how many students were at each level (names no student)."""
    stream: str
    seq: int
    t_capture: float
    t_media: float | None
    levels: list[int]


class TimelineEntry(_Part, kw_only=True):
    """One prediction (shared/data/totals.py `timeline_entry`)."""
    stream: str
    seq: int
    student: int
    level: int
    probs: list[float]
    t_capture: float
    t_media: float | None
    box: list[int | float] | UnsetType = UNSET
    conf: float | UnsetType = UNSET
    signals: dict[str, Any] | UnsetType = UNSET  # yaw, pitch, ... and the baseline's `reason`
    states: dict[str, int] | UnsetType = UNSET


class Episode(_Part, kw_only=True):
    """A run of one student's consecutive predictions at "bored" or worse."""
    stream: str
    student: int
    start: float
    end: float
    start_media: float | None
    end_media: float | None
    predictions: int
    max_level: int


class StreamSection(_Part, kw_only=True):
    stream: str
    source: str
    started: float | None
    ended: float | None
    end_reason: str
    totals: Totals
    students: list[Student]
    episodes: list[Episode]
    recording: str | UnsetType = UNSET  # several streams: where this one's recording is


class SetAside(_Part, kw_only=True):
    """Detections facedetect never made students of."""
    short_lived: int
    not_a_face: int
    total: int
    min_seconds: float | None


class MarkRow(_Part, kw_only=True):
    """A teacher's mark (shared/data/marks.py `Mark`) with the media time of the nearest prediction."""
    session: str
    student: str
    t: float
    level_given: int
    level_predicted: int | None
    signals: dict[str, Any]
    created_at: float
    source: str
    id: str
    stream: str
    t_media: float | None | UnsetType = UNSET


class Agreement(_Part, kw_only=True):
    marks: int
    agreed: int
    rate: float | None
    confusion: list[list[int]]
    without_prediction: int


class StoreSection(_Part, kw_only=True):
    """Where the figures come from when not simply Redis (services/reporter/class_source.py):
    Redis refilled by the aggregator (resets, refilled_frames) or the journal (journal, frames, why)."""
    source: str
    resets: int | UnsetType = UNSET
    refilled_frames: int | UnsetType = UNSET
    journal: str | UnsetType = UNSET
    frames: int | UnsetType = UNSET
    why: str | UnsetType = UNSET
    missing: list[str]
    note: str


class Report(_Part, kw_only=True, rename={"class_": "class"}):
    """The end-of-session report, schema 1."""
    schema: int
    session: str
    class_: str
    stream: str
    model: ModelInfo  # the same Struct the messages carry; every field written
    note: str
    started: float | None
    ended: float | None
    end_reason: str
    generated_at: float | None
    class_level_only: bool
    totals: Totals
    class_timeline: list[ClassFrame]
    reasons: dict[str, int]
    students: list[Student]
    timeline: list[TimelineEntry]
    episodes: list[Episode]
    streams: list[StreamSection]
    set_aside: SetAside
    marks: list[MarkRow]
    agreement: Agreement
    store: StoreSection | UnsetType = UNSET
    recordings: dict[str, str] | UnsetType = UNSET  # several streams: stream -> recording
    recording: str | UnsetType = UNSET  # one stream: the session's recording
    omitted: list[str] | UnsetType = UNSET  # the MQTT body: the lists left out to fit


class ReportError(ValueError):
    """A report file that is not a report of this schema; the message says which key is wrong."""


class _Skipped(msgspec.Struct):
    """A list item counted, its content skipped unread."""


class _StreamId(msgspec.Struct):
    stream: str


class _ModelName(msgspec.Struct):
    name: str = ""


class _Counts(msgspec.Struct):
    frames: int
    predictions: int


class ReportHead(msgspec.Struct, kw_only=True, rename={"class_": "class"}):
    """What a list of past sessions shows of a report, read without its timeline: an hour of a 7x7
    gallery is a 51 MB file, 160 MB once read whole."""
    schema: int
    session: str
    class_: str
    model: _ModelName
    started: float | None
    ended: float | None
    class_level_only: bool
    totals: _Counts
    students: list[_Skipped]
    streams: list[_StreamId]


def load_report_head(path: str | Path) -> ReportHead:
    """A report file's head (ReportError when the file has no report's head)."""
    try:
        return msgspec.json.decode(Path(path).read_bytes(), type=ReportHead)
    except msgspec.ValidationError as exc:
        raise ReportError(f"not a report: {exc}") from exc


def load_report(source: str | Path | bytes) -> Report:
    """A report from its file (a path) or its JSON text (bytes)."""
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        return msgspec.json.decode(raw, type=Report)
    except msgspec.ValidationError as exc:
        raise ReportError(f"not a report: {exc}") from exc


def from_dict(data: dict[str, Any]) -> Report:
    """A report from plain dicts (as json.loads gives, or a test builds)."""
    try:
        return msgspec.convert(data, type=Report)
    except msgspec.ValidationError as exc:
        raise ReportError(f"not a report: {exc}") from exc


def timeline_of(entries: list[Any]) -> list[TimelineEntry]:
    """Timeline entries as Structs: those that are already one are taken as they are (not copied)."""
    try:
        return msgspec.convert(entries, type=list[TimelineEntry])
    except msgspec.ValidationError as exc:
        raise ReportError(f"not a report's timeline: {exc}") from exc


def to_dict(report: msgspec.Struct) -> dict[str, Any]:
    """The report (or a part) as plain dicts and lists, keys in the file's order, UNSET left out.

    The bridge for readers not converted to attributes yet, and what MQTT and the web send."""
    out: dict[str, Any] = msgspec.to_builtins(report)
    return out


def report_bytes(report: Report) -> bytes:
    """The report file's content, laid out as `json.dumps(report_dict, indent=1)` wrote it (byte for byte
    but for non-ASCII text, now UTF-8 rather than \\u escapes). Encoded from the Structs, never through
    dicts: those were 280 MB more for an hour of a 7x7 gallery, in a reporter limited to 512 MB."""
    return msgspec.json.format(msgspec.json.encode(report), indent=1)


TIMELINE_CHUNK = 2000  # timeline entries encoded at a time by report_chunks (about 1 MB of JSON)
_EMPTY_TIMELINE = b'\n "timeline": []'  # a top-level key: a string in JSON holds no newline


def report_chunks(report: Report, raw: Sequence[bytes] = ()) -> Iterator[bytes]:
    """report_bytes in pieces, the timeline TIMELINE_CHUNK entries at a time: the file of an hour of a 7x7
    gallery (352,800 entries, 214 MB) never whole in memory, nor twice (encoded, then laid out). `raw`: a long
    class's timeline as each entry's JSON (shared/data/timeline_columns.py RawTimeline), not in `report`."""
    count = len(raw) or len(report.timeline)
    if count <= TIMELINE_CHUNK and not raw:
        yield report_bytes(report)
        return
    head = report_bytes(msgspec.structs.replace(report, timeline=[]))
    close = head.index(_EMPTY_TIMELINE) + len(_EMPTY_TIMELINE) - 1  # the empty list's "]"
    yield head[:close]
    for start in range(0, count, TIMELINE_CHUNK):
        # Raw entries are decoded and encoded again: json.dumps wrote 4.8e-05 where msgspec writes 0.000048,
        # and the file is the same whichever way its timeline was read.
        encoded = msgspec.json.encode(msgspec.json.decode(b"[" + b",".join(raw[start:start + TIMELINE_CHUNK]) + b"]")
                                      if raw else report.timeline[start:start + TIMELINE_CHUNK])
        laid_out = msgspec.json.format(encoded, indent=1)
        entries = laid_out[1:-2]  # "[" ... "\n]" off: the entries, each a line deeper in the report
        yield (b"," if start else b"") + entries.replace(b"\n", b"\n ")
    yield b"\n " + head[close:]


def report_json(report: Report) -> str:
    """The report file's text (report_bytes, decoded)."""
    return report_bytes(report).decode()
