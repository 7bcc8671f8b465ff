"""The aggregator's journal: what it accepted, on local disk, until the class's report is written.

One append-only file per session, JOURNAL_DIR/<session>/journal.jsonl (with `engagement run`
the run's own folder, .engagement/runs/<session>/), one JSON line per record:

  {"k": "journal", "session": ..., "id": ..., "created": ...}     the first line
  {"k": "frame", "n": N, "r": {FrameRecord's fields}}             a predictions message accepted
  {"k": "eos", "n": N, "stream": ..., "seq": ..., "t_capture": ..., "ended": ..., "reason": ...,
   "source": ..., "class_id": ...}                                 a stream's end accepted

N counts the session's records from 1. Redis keeps the highest N it has applied in
P:session:<sid>:journal (shared/data/totals.py): a Redis that comes back empty or from an old
snapshot answers a write with a lower N than the aggregator knows it applied, and the aggregator
refills it from here. When Redis does not come back, the reporter writes the report from here
(`session_from_journal`, the same shape as `Store.load_session`).

Each record is written with one os.write (a crashed process loses nothing the kernel has) and
fsynced in batches (FSYNC_EVERY records, and on every tick and stop): a power cut loses at
most one batch. A line cut short (a crash mid-write, a full disk) is skipped and counted by the
reader. When the disk is full the journal moves, whole, to the fallback folder
(REPORT_FALLBACK_DIR/journal/<session>/) and says so in one line.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import msgspec

from shared.data import totals as totals_module
from shared.data.filenames import file_part
from shared.data.levels import LEVELS
from shared.data.report_doc import TimelineEntry
from shared.data.timeline_columns import RawTimeline
from shared.data.totals import FrameRecord, add_record, empty_totals, entry_json, states_of, timeline_entry

JOURNAL_NAME = "journal.jsonl"
# A frame line's "r": the record's fields but its number (the line's own "n"), in their order.
FRAME_FIELDS = tuple(f.name for f in fields(FrameRecord) if f.name != "journal_n")
FSYNC_EVERY = 32  # records between two fsyncs (and at every tick)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def journal_path(folder: Path | str, session: str) -> Path:
    return Path(folder) / file_part(session, empty="session") / JOURNAL_NAME


def fallback_journal_path(fallback: Path | str, session: str) -> Path:
    return journal_path(Path(fallback) / "journal", session)


def find_journal(folder: Path | str, session: str, fallback: Path | str | None = None) -> Path | None:
    """The session's journal: the fallback folder's when it moved there (it holds every record), else the
    journal folder's; None when neither exists (or no folder is set)."""
    candidates = [fallback_journal_path(fallback, session)] if fallback else []
    candidates += [journal_path(folder, session)] if folder else []
    return next((p for p in candidates if p.is_file()), None)


def free_bytes(folder: Path) -> int:
    """Free space of the file system holding `folder` (its nearest existing parent)."""
    for candidate in (folder, *folder.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return 0


def disk_full_line(folder: Path, what: str) -> str:
    """The one line a full disk gets: the folder, the space left, and where things go instead."""
    return f"disk full: {folder} has {free_bytes(folder) // 1024} KB left; {what}"


def write_all(fd: int, data: bytes) -> None:
    """All of `data`, or OSError: a full disk may take part of a line before it refuses the rest (one
    os.write would then return short, and the caller think the whole line written)."""
    while data:
        data = data[os.write(fd, data):]


class JournalError(OSError):
    """The journal could not be written in its folder nor in the fallback folder."""


class Journal:
    """One session's journal, open for appending."""

    def __init__(self, folder: Path | str, session: str, fallback: Path | str | None = None,
                 log: logging.Logger | None = None) -> None:
        self.session = session
        self.fallback = Path(fallback) if fallback else None
        self.log = log or logging.getLogger("journal")
        self.path = find_journal(folder, session, self.fallback) or journal_path(folder, session)
        self.moved = self.path != journal_path(folder, session)
        self.n = 0
        self.unsynced = 0
        existing = read_journal(self.path, keep_frames=False) if self.path.exists() else None
        if existing is not None and existing.id:  # a restarted aggregator goes on where it stopped
            self.id, self.n = existing.id, existing.last_n
            self.fd = self._open(self.path)
            if not self.path.read_bytes().endswith(b"\n"):  # a line cut short by a crash: ours start afresh
                self._write(b"\n")
        else:
            self.id = uuid.uuid4().hex
            self.fd = self._open(self.path)
            self._write(self._line({"k": "journal", "session": session, "id": self.id, "created": time.time()}))

    @staticmethod
    def _open(path: Path) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    @staticmethod
    def _line(obj: dict[str, Any]) -> bytes:
        return (json.dumps(obj, separators=(",", ":")) + "\n").encode()

    def append_frame(self, record: FrameRecord) -> int:
        """Journal a frame; its record number."""
        # The fields as they are, encoded at once: dataclasses.asdict deep-copied every prediction
        # first, a third of the aggregator's CPU a frame for the same line.
        return self._append({"k": "frame", "r": {name: getattr(record, name) for name in FRAME_FIELDS}})

    def append_eos(self, stream: str, seq: int, t_capture: float, ended: float, reason: str, source: str,
                   class_id: str) -> int:
        return self._append({"k": "eos", "stream": stream, "seq": seq, "t_capture": t_capture, "ended": ended,
                             "reason": reason, "source": source, "class_id": class_id})

    def _append(self, body: dict[str, Any]) -> int:
        n = self.n + 1
        self._write(self._line({**body, "n": n}))
        self.n = n
        self.unsynced += 1
        if self.unsynced >= FSYNC_EVERY:
            self.sync()
        return n

    def _write(self, data: bytes) -> None:
        try:
            write_all(self.fd, data)
        except OSError as exc:
            if exc.errno not in DISK_FULL or self.fallback is None or self.moved:
                raise JournalError(exc.errno, f"journal {self.path}: {exc.strerror}") from exc
            self._move_to_fallback(data)

    def _move_to_fallback(self, data: bytes) -> None:
        """The disk is full: the journal (its whole lines) goes on in the fallback folder."""
        assert self.fallback is not None
        old = self.path
        new = fallback_journal_path(self.fallback, self.session)
        self.log.error("the journal of session %s moves to %s: no space left under %s (%d KB free)", self.session, new,
                       old.parent, free_bytes(old.parent) // 1024)
        kept = b"".join(line for line in old.read_bytes().splitlines(keepends=True) if line.endswith(b"\n"))
        try:
            new.parent.mkdir(parents=True, exist_ok=True)
            tmp = new.with_name(new.name + ".tmp")
            tmp.write_bytes(kept + data)
            fd = os.open(tmp, os.O_WRONLY | os.O_APPEND)
            os.fsync(fd)
            os.replace(tmp, new)
        except OSError as exc:
            raise JournalError(exc.errno, f"journal {new}: {exc.strerror} (and {old}'s disk is full)") from exc
        os.close(self.fd)
        self.fd, self.path, self.moved = fd, new, True

    def sync(self) -> None:
        """fsync what was appended since the last one (a batch: see FSYNC_EVERY)."""
        if self.unsynced and self.fd >= 0:
            try:
                os.fsync(self.fd)
            except OSError as exc:
                raise JournalError(exc.errno, f"journal {self.path}: {exc.strerror}") from exc
            self.unsynced = 0

    def close(self) -> None:
        if self.fd >= 0:
            try:
                self.sync()
            finally:
                os.close(self.fd)
                self.fd = -1


# --- reading ----------------------------------------------------------------------------------

@dataclass
class JournalContents:
    path: Path
    id: str = ""
    session: str = ""
    # (n, record), first of each (stream, seq); empty when read with keep_frames=False (`frame_count` counts them).
    frames: list[tuple[int, FrameRecord]] = field(default_factory=list)
    eos: list[dict[str, Any]] = field(default_factory=list)  # first of each stream
    unreadable: int = 0  # lines cut short (a crash mid-write, a full disk) or not ours
    last_n: int = 0
    frame_count: int = 0
    prediction_count: int = 0
    streams: set[str] = field(default_factory=set)  # streams with a frame

    def ended(self, expected: list[str]) -> bool:
        """Whether the class has ended: every stream expected or seen has its eos (one camera: any eos)."""
        ended = {e["stream"] for e in self.eos}
        if not expected:
            return bool(ended)
        return (set(expected) | self.streams) <= ended


def read_journal(path: Path, keep_frames: bool = True) -> JournalContents:
    """Every record of a journal, each frame and each stream's end once (a frame resent while Redis was down
    is journaled again). `keep_frames=False`: the frames are counted, not kept (an hour of a 7x7 gallery's
    records as objects is over a gigabyte), and each frame's predictions are not even parsed, only counted;
    `journal_frames` reads them, one at a time."""
    out = JournalContents(path)
    for n, record in _records(path, out, _counted_line if not keep_frames else _whole_line):
        if keep_frames:
            assert isinstance(record, FrameRecord)
            out.frames.append((n, record))
    return out


def journal_frames(path: Path) -> Iterator[FrameRecord]:
    """The journal's frames, each once, read one at a time."""
    return (record for _, record in frames_of(path, JournalContents(path)))


def frames_of(path: Path, out: JournalContents) -> Iterator[tuple[int, FrameRecord]]:
    """(n, record) of each frame's first record, as it is read; `out` takes the rest (header, ends, counts:
    whole once the iterator is done)."""
    for n, record in _records(path, out, _whole_line):
        assert isinstance(record, FrameRecord)
        yield n, record


@dataclass
class _Line:
    """One journal line as the reader takes it: its kind and number, and what the kind carries."""
    kind: str
    n: int = 0
    header: tuple[str, str] = ("", "")  # a "journal" line's (id, session)
    frame: tuple[Any, Any, int] = ("", 0, 0)  # a "frame" line's (stream, seq, predictions)
    record: FrameRecord | None = None  # the frame whole (not when counting)
    eos: dict[str, Any] | None = None


class _CountedFrame(msgspec.Struct, forbid_unknown_fields=True):
    """A frame line's record as counting takes it: its predictions unparsed. Every field FrameRecord takes
    is named, and no other, so that a record FrameRecord refuses is refused here too."""
    session: Any
    class_id: Any
    stream: Any
    seq: Any
    t_capture: Any
    t_media: Any
    faces: Any
    predictions: list[msgspec.Raw]
    model: Any = None


class _CountedLine(msgspec.Struct):
    k: str
    n: Any = None
    r: _CountedFrame | None = None
    id: Any = None
    session: Any = None


_COUNTED = msgspec.json.Decoder(_CountedLine)


def _whole_line(raw: bytes) -> _Line:
    line = json.loads(raw)
    kind = line["k"]
    if kind == "journal":
        return _Line(kind, header=(str(line["id"]), str(line["session"])))
    if kind == "frame":
        record = FrameRecord(**line["r"], journal_n=int(line["n"]))
        if not isinstance(record.predictions, list):
            raise TypeError("predictions")
        return _Line(kind, record.journal_n, frame=(record.stream, record.seq, len(record.predictions)),
                     record=record)
    if kind == "eos":
        hash(line["stream"])  # KeyError, TypeError: an end without a stream (a name) is unreadable
        return _Line(kind, int(line["n"]), eos=line)
    raise ValueError(kind)


def _counted_line(raw: bytes) -> _Line:
    """As _whole_line but the frame whole: its predictions (most of the bytes) are skipped, not parsed. An hour
    of a 7x7 gallery (105 MB) is counted in 0.2 s of CPU, against 2 s parsed whole."""
    line = _COUNTED.decode(raw)
    if line.k == "journal":
        if line.id is None or line.session is None:
            raise KeyError("id")
        return _Line(line.k, header=(str(line.id), str(line.session)))
    if line.k == "frame":
        if line.r is None:
            raise KeyError("r")
        return _Line(line.k, int(line.n), frame=(line.r.stream, line.r.seq, len(line.r.predictions)))
    if line.k == "eos":  # one a stream: read whole
        return _whole_line(raw)
    raise ValueError(line.k)


def _records(path: Path, out: JournalContents,
             read_line: Callable[[bytes], _Line]) -> Iterator[tuple[int, FrameRecord | None]]:
    """(n, record or None when counting) of each frame's first record; `out` takes the rest."""
    seen: set[tuple[Any, Any]] = set()
    ended: set[str] = set()
    with path.open("rb") as f:
        for raw in f:
            try:
                line = read_line(raw)
                stream, seq, predictions = line.frame
                first = line.kind == "frame" and (stream, seq) not in seen  # TypeError: not a stream and seq
            except (ValueError, KeyError, TypeError):  # msgspec's DecodeError is a ValueError
                out.unreadable += 1
                continue
            if line.kind == "journal":
                out.id, out.session = line.header
                continue
            out.last_n = max(out.last_n, line.n)
            if line.eos is not None and line.eos["stream"] not in ended:
                ended.add(line.eos["stream"])
                out.eos.append(line.eos)
            if first:
                seen.add((stream, seq))
                out.frame_count += 1
                out.prediction_count += predictions
                out.streams.add(stream)
                yield line.n, line.record


class _StudentRows:
    """The report's students section, a frame at a time."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}

    def add(self, rec: FrameRecord) -> None:
        for p in rec.predictions:
            key = (rec.stream, int(p["student"]))
            row = self.rows.setdefault(key, {"stream": rec.stream, "student": key[1], "predictions": 0,
                                             "levels": {str(i): 0 for i in range(LEVELS)},
                                             "first_seen": None, "last_seen": None, "first_media": None,
                                             "last_media": None})
            row["predictions"] += 1
            row["levels"][str(int(p["level"]))] += 1
            for head, level in states_of(p).items():
                states = row.setdefault("states", {}).setdefault(head, {str(i): 0 for i in range(LEVELS)})
                states[str(level)] += 1
            if row["first_seen"] is None or rec.t_capture < row["first_seen"]:
                row["first_seen"], row["first_media"] = rec.t_capture, rec.t_media
            if row["last_seen"] is None or rec.t_capture > row["last_seen"]:
                row["last_seen"], row["last_media"] = rec.t_capture, rec.t_media

    def sorted(self) -> list[dict[str, Any]]:
        return [self.rows[k] for k in sorted(self.rows)]


@dataclass
class _Scan:
    """What a session's report needs from its frames, gathered in one pass over them."""

    raw: bool  # a long class: the timeline kept as each entry's JSON (RawTimeline), not as Structs
    totals: dict[str, Any] = field(default_factory=empty_totals)
    per_stream: dict[str, dict[str, Any]] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)  # stream -> its first frame's capture time
    students: _StudentRows = field(default_factory=_StudentRows)
    model: dict[str, Any] = field(default_factory=dict)  # the last frame's that names one
    first: FrameRecord | None = None
    timeline: list[Any] = field(default_factory=list)

    def add(self, rec: FrameRecord) -> None:
        self.first = self.first or rec
        self.totals = add_record(self.totals, rec)
        self.per_stream[rec.stream] = add_record(self.per_stream.get(rec.stream) or empty_totals(), rec)
        self.started[rec.stream] = min(self.started.get(rec.stream, rec.t_capture), rec.t_capture)
        self.students.add(rec)
        if rec.model and rec.model.get("name"):
            self.model = rec.model
        for p in rec.predictions:
            entry = timeline_entry(rec, p)
            self.timeline.append(entry_json(entry).encode() if self.raw else msgspec.convert(entry, TimelineEntry))


def session_from_journal(contents: JournalContents) -> dict[str, Any]:
    """What `Store.load_session` returns, from the journal alone (Redis gone): meta, totals, streams,
    students, timeline. Tile names live only in Redis and are not here; the teacher's marks are beside it
    (shared/data/marks_journal.py). Frames not kept (`read_journal(..., keep_frames=False)`) are read again
    one at a time; past RAW_TIMELINE_AFTER predictions the timeline is a RawTimeline, as from Redis."""
    frames: Iterable[FrameRecord] = ([rec for _, rec in contents.frames] if contents.frames
                                     else journal_frames(contents.path) if contents.frame_count else [])
    scan = _Scan(raw=contents.prediction_count > totals_module.RAW_TIMELINE_AFTER)
    for rec in frames:
        scan.add(rec)
    eos = {e["stream"]: e for e in contents.eos}
    ids = sorted(set(scan.per_stream) | set(eos))
    streams = []
    for sid in ids:
        end = eos.get(sid) or {}
        streams.append({"stream": sid, "source": end.get("source", ""), "started": scan.started.get(sid),
                        "ended": end.get("ended"), "end_reason": end.get("reason", ""),
                        "totals": scan.per_stream.get(sid) or empty_totals()})
    last_end = max(contents.eos, key=lambda e: e["ended"]) if contents.eos else None
    model, first = scan.model, scan.first
    meta = {"session": contents.session, "class": first.class_id if first else (last_end or {}).get("class_id", ""),
            "stream": first.stream if first else (ids[0] if ids else ""),
            "started": min(scan.started.values(), default=None),
            "ended": last_end["ended"] if last_end else None, "end_reason": last_end["reason"] if last_end else "",
            "model": {"name": str(model.get("name") or ""), "kind": str(model.get("kind") or ""),
                      "baseline": bool(model.get("baseline")), "affect": bool(model.get("affect")),
                      "labels": [str(x) for x in model.get("labels") or []],
                      "engine": str(model.get("engine") or ""), "device": str(model.get("device") or "")}}
    if scan.raw:
        timeline: Any = RawTimeline(scan.timeline)
    else:  # as Store.load_session gives it: the report's Structs, sorted the same way
        timeline = sorted(scan.timeline, key=lambda e: (e.t_capture, e.seq, e.student))
    return {"meta": meta, "totals": scan.totals, "streams": streams, "students": scan.students.sorted(),
            "timeline": timeline}


def remove_journal(folder: str, session: str, fallback: Path | None) -> None:
    """The report is on disk: the session's journal goes (and its folder, when that leaves it empty)."""
    for path in ([journal_path(folder, session)] if folder else []) + (
            [fallback_journal_path(fallback, session)] if fallback else []):
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass  # not empty: the launcher's run folder (run.json, a private Redis's data)
