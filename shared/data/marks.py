"""The teacher's corrections ("marks"): durable, labelled data; never an image.

A mark says: at capture time `t` of `session`, the teacher saw `student` of `stream` at `level_given`,
while the model said `level_predicted` from these numeric `signals` (for the baseline: yaw,
pitch, eye openness, ...). The web service writes marks, the reporter puts them in the
session's report, `engagement-train feedback` exports them and `engagement-train
fit-baseline` fits the baseline's thresholds to them.

Ids start at 1 in every stream of a class, so a student is (stream, student): a mark names
its stream when the session has several (the web page always does); a mark without one (a
one-stream class, or marks made before streams) matches that student id in any stream.

They live in Redis, the project's store of record (append-only file in compose), under keys
of their own so that deleting a session's totals (`P:session:<sid>:*`) never takes them:

  P:marks:next                  string  last mark id handed out (INCR)
  P:marks:sessions              set     sessions with at least one mark
  P:marks:session:<sid>         stream  one entry per mark, field d = the mark's JSON

No key expires. A mark is written by one Lua script (id, entry and index together or not
at all).

While the class runs the web also keeps each mark on disk (shared/data/marks_journal.py): a Redis
that restarts empty or is away mid-class loses none, the report carries them.

Redis is not always there after the class: `engagement run` without REDIS_URL starts a
private Redis that goes with the class. So the reporter writes the session's marks into its
report, and whoever reads marks afterwards (the web's session page and API, `engagement-train
feedback`) takes them from Redis and from the report alike: `from_report` reads them back,
`merge` joins the two without counting a mark twice.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal, overload

import msgspec
import numpy as np
import redis

from shared.data.report_doc import Report
from shared.data.timeline_columns import TimelineColumns

LEVELS = 4
SOURCES = ("live", "session")
MAX_SIGNALS = 64  # a mark carries a handful of numbers; more is not a mark
MAX_ID_LENGTH = 200
DEFAULT_PREFIX = "engagement"

# ARGV: prefix, session, mark JSON without id (the id is spliced in here, once known).
_ADD = """
local p, sid = ARGV[1], ARGV[2]
local id = redis.call('INCR', p .. ':marks:next')
redis.call('XADD', p .. ':marks:session:' .. sid, '*', 'id', tostring(id), 'd', ARGV[3])
redis.call('SADD', p .. ':marks:sessions', sid)
return tostring(id)
"""


class MarkError(ValueError):
    """A malformed mark; `field` names the offending field (the web answers 422 with it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class Mark:
    session: str
    student: str
    t: float  # capture time (epoch seconds) of the moment marked
    level_given: int  # the teacher's level, 0..3
    level_predicted: int | None  # the model's level at that moment (None: no prediction)
    signals: dict[str, float]  # the numbers the model used (never an image)
    created_at: float  # when the teacher marked it (epoch seconds)
    source: str  # "live" (the live page) or "session" (a past session's page)
    id: str = ""  # given by MarkStore.add
    stream: str = ""  # the student's stream ("": the session's only one)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise MarkError(name, "required, a string or an integer id")
    text = str(value).strip()
    if not text or len(text) > MAX_ID_LENGTH:
        raise MarkError(name, f"must be 1-{MAX_ID_LENGTH} characters")
    return text


def _number(payload: dict[str, Any], name: str, default: float | None = None) -> float:
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MarkError(name, "required, a finite number (epoch seconds)")
    if value <= 0:
        raise MarkError(name, "must be a positive time (epoch seconds)")
    return float(value)


@overload
def _level(payload: dict[str, Any], name: str, optional: Literal[False]) -> int: ...
@overload
def _level(payload: dict[str, Any], name: str, optional: bool) -> int | None: ...
def _level(payload: dict[str, Any], name: str, optional: bool) -> int | None:
    value = payload.get(name)
    if value is None and optional:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < LEVELS:
        raise MarkError(name, f"{'optional, ' if optional else 'required, '}an integer level 0-3")
    return value


def _stream(payload: dict[str, Any]) -> str:
    value = payload.get("stream")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value.strip()) > MAX_ID_LENGTH:
        raise MarkError("stream", f"optional, a stream id of at most {MAX_ID_LENGTH} characters")
    return value.strip()


def _signals(payload: dict[str, Any]) -> dict[str, float]:
    """Finite numbers only: text, lists, nested dicts (e.g. the baseline's `now`) are dropped."""
    value = payload.get("signals") or {}
    if not isinstance(value, dict):
        raise MarkError("signals", "must be an object of numbers")
    out = {}
    for key, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        out[str(key)] = float(v)
    if len(out) > MAX_SIGNALS:
        raise MarkError("signals", f"at most {MAX_SIGNALS} numbers")
    return out


def validate_mark(payload: dict[str, Any]) -> Mark:
    """A Mark from untrusted JSON (the web's request body), or MarkError naming the bad field.

    Required: session, student, t, level_given. Optional: level_predicted (0-3 or null),
    signals (object; only its finite numbers are kept), created_at (default now), source
    ("live" default, or "session"), stream (the student's stream; needed when the session has
    several). Other fields are ignored and never stored.
    """
    if not isinstance(payload, dict):
        raise MarkError("body", "must be a JSON object")
    source = payload.get("source", "live")
    if source not in SOURCES:
        raise MarkError("source", f"one of {', '.join(SOURCES)}")
    return Mark(
        session=_text(payload, "session"),
        student=_text(payload, "student"),
        t=_number(payload, "t"),
        level_given=_level(payload, "level_given", optional=False),
        level_predicted=_level(payload, "level_predicted", optional=True),
        signals=_signals(payload),
        created_at=_number(payload, "created_at", default=time.time()),
        source=source,
        stream=_stream(payload),
    )


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class MarkStore:
    def __init__(self, redis_client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self.r = redis_client
        self.prefix = prefix
        self._add = redis_client.register_script(_ADD)

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX, timeout: float = 2.0) -> MarkStore:
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout,
                                      socket_connect_timeout=timeout)
        return cls(client, prefix)

    def _key(self, session: str) -> str:
        return f"{self.prefix}:marks:session:{session}"

    def add(self, mark: Mark) -> str:
        """Store a mark for good; its id (also set on `mark.id`)."""
        body = mark.to_dict()
        body.pop("id", None)
        mark.id = _str(self._add(args=[self.prefix, mark.session, json.dumps(body, separators=(",", ":"))]))
        return mark.id

    def for_session(self, session: str) -> list[Mark]:
        """The session's marks, by the moment marked (then by when they were made)."""
        marks = []
        for _entry, fields in self.r.xrange(self._key(session)) or []:
            f = {_str(k): _str(v) for k, v in (fields or {}).items()}
            marks.append(Mark(**json.loads(f["d"]), id=f["id"]))
        marks.sort(key=lambda m: (m.t, m.created_at, int(m.id)))
        return marks

    def new_marks(self, session: str, after: str = "0-0") -> tuple[list[Mark], str]:
        """Marks of `session` stored after position `after` (in the order stored), and the new position.

        For a reader that follows a class as it runs (inference re-anchors neutral poses).
        """
        entries = self.r.xrange(self._key(session), min=f"({after}" if after != "0-0" else "-", max="+")
        marks = []
        for entry, fields in entries or []:
            f = {_str(k): _str(v) for k, v in (fields or {}).items()}
            marks.append(Mark(**json.loads(f["d"]), id=f["id"]))
            after = _str(entry)
        return marks, after

    def sessions(self) -> list[str]:
        return sorted(_str(s) for s in self.r.smembers(f"{self.prefix}:marks:sessions"))

    def all(self) -> Iterator[Mark]:
        """Every mark of every session, session by session."""
        for session in self.sessions():
            yield from self.for_session(session)


def from_report(report: Report) -> list[Mark]:
    """The marks a report carries (the reporter wrote them at the end of the class); a row that is
    not a valid mark (a hand-edited file: a level out of range, say) is skipped rather than failing the rest."""
    out = []
    for row in report.marks:
        try:
            mark = validate_mark({**msgspec.to_builtins(row), "session": row.session or report.session})
        except MarkError:
            continue
        mark.id = row.id
        out.append(mark)
    return out


def _identity(mark: Mark) -> tuple[Any, ...]:
    """What makes two copies one mark: ids are per Redis (a private one starts again at 1), so the
    mark's own content, down to the moment the teacher made it, says which mark it is."""
    return (mark.session, mark.stream, mark.student, mark.t, mark.level_given, mark.level_predicted,
            mark.created_at, mark.source, tuple(sorted(mark.signals.items())))


def merge(*sources: list[Mark]) -> list[Mark]:
    """Marks from several places (Redis, report files), by the moment marked: all of the first
    source, and of each later one the marks no earlier source had (a source's own marks are
    never merged with each other: two alike are two clicks)."""
    out: list[Mark] = []
    seen: set[tuple[Any, ...]] = set()
    for marks in sources:
        out += [m for m in marks if _identity(m) not in seen]
        seen |= {_identity(m) for m in marks}
    return sorted(out, key=lambda m: (m.session, m.t, m.created_at))


def agreement(marks: list[Mark]) -> dict[str, Any]:
    """How often the model's level equals the teacher's, over marks that have a model level.

    confusion[given][predicted] counts marks (rows: the teacher's level, columns: the
    model's); marks without a model level are counted apart (`without_prediction`).
    """
    confusion = [[0] * LEVELS for _ in range(LEVELS)]
    missing = 0
    for m in marks:
        if m.level_predicted is None:
            missing += 1
            continue
        confusion[m.level_given][m.level_predicted] += 1
    n = sum(map(sum, confusion))
    agreed = sum(confusion[i][i] for i in range(LEVELS))
    return {"marks": n, "agreed": agreed, "rate": (agreed / n) if n else None,
            "confusion": confusion, "without_prediction": missing}


def report_section(marks: list[Mark], class_level_only: bool = False,
                   timeline: TimelineColumns | None = None) -> dict[str, Any]:
    """What a session's report (and the web's session page) says about its marks.

    With the report's `timeline`, each mark also gets `t_media`: the media time (files) of
    that student's prediction nearest in capture time. Class-level only: the agreement
    figures stay (they name no student), the marks go.
    """
    rows = [] if class_level_only else [m.to_dict() for m in marks]
    if timeline is not None:
        ids = np.unique(timeline.student).tolist()
        for row in rows:
            # The mark's student: the same id (as text), in the mark's stream when it names one.
            mine = np.isin(timeline.student, [i for i in ids if str(i) == str(row["student"])])
            if row.get("stream"):
                mine &= timeline.stream == (timeline.streams.index(row["stream"])
                                            if row["stream"] in timeline.streams else -1)
            at = np.flatnonzero(mine)
            nearest = at[np.argmin(np.abs(timeline.t_capture[at] - row["t"]))] if len(at) else None
            row["t_media"] = None if nearest is None else timeline.media(int(nearest))
    return {"marks": rows, "agreement": agreement(marks)}


__all__ = ["LEVELS", "SOURCES", "Mark", "MarkError", "MarkStore", "agreement", "from_report", "merge",
           "report_section", "validate_mark"]
