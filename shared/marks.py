"""The teacher's marks: durable in Redis, validated, and compared with the model.

Minimal version of the agreed interface (issue 11, part B writes the full one; at merge
theirs replaces this file). A mark is a number-only record: session, student, the capture
time of the moment marked, the level the teacher gave, the model's level and its numeric
signals at that moment. Never an image.

Keys (P = the totals' prefix): P:marks:sessions (set of sessions with marks),
P:marks:session:<session> (hash id -> JSON), P:marks:next (counter).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

LEVELS = 4
SOURCES = ("live", "session")
DEFAULT_PREFIX = "engagement"


class MarkError(ValueError):
    """A mark that does not validate; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class Mark:
    session: str
    student: str
    t: float
    level_given: int
    level_predicted: int | None
    signals: dict[str, float] = field(default_factory=dict)
    created_at: float = 0.0
    source: str = "live"


def _level(payload: dict[str, Any], name: str, optional: bool = False) -> int | None:
    value = payload.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < LEVELS:
        raise MarkError(name, f"must be an integer 0-{LEVELS - 1}")
    return value


def validate_mark(payload: dict) -> Mark:
    if not isinstance(payload, dict):
        raise MarkError("body", "must be a JSON object")
    session = payload.get("session")
    if not isinstance(session, str) or not session or len(session) > 200:
        raise MarkError("session", "must be a non-empty string")
    student = payload.get("student")
    if isinstance(student, int) and not isinstance(student, bool):
        student = str(student)
    if not isinstance(student, str) or not student or len(student) > 100:
        raise MarkError("student", "must be a student id")
    t = payload.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
        raise MarkError("t", "must be a capture time in seconds")
    signals = payload.get("signals") or {}
    if not isinstance(signals, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for k, v in signals.items()):
        raise MarkError("signals", "must map names to numbers")
    source = payload.get("source", "live")
    if source not in SOURCES:
        raise MarkError("source", f"must be one of {', '.join(SOURCES)}")
    created = payload.get("created_at") or time.time()
    return Mark(session=session, student=student, t=float(t), level_given=_level(payload, "level_given"),
                level_predicted=_level(payload, "level_predicted", optional=True),
                signals={k: float(v) for k, v in signals.items()}, created_at=float(created), source=source)


class MarkStore:
    def __init__(self, redis_client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self.r = redis_client
        self.prefix = prefix

    def add(self, mark: Mark) -> str:
        mark_id = str(self.r.incr(f"{self.prefix}:marks:next"))
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(f"{self.prefix}:marks:session:{mark.session}", mark_id, json.dumps(asdict(mark)))
        pipe.sadd(f"{self.prefix}:marks:sessions", mark.session)
        pipe.execute()
        return mark_id

    def for_session(self, session: str) -> list[Mark]:
        raw = self.r.hgetall(f"{self.prefix}:marks:session:{session}")
        marks = [Mark(**json.loads(v)) for _, v in sorted(raw.items(), key=lambda kv: int(kv[0]))]
        return sorted(marks, key=lambda m: (m.t, m.created_at))

    def all(self) -> Iterator[Mark]:
        for session in sorted(self.r.smembers(f"{self.prefix}:marks:sessions")):
            yield from self.for_session(session if isinstance(session, str) else session.decode())


def agreement(marks: list[Mark]) -> dict:
    compared = [m for m in marks if m.level_predicted is not None]
    confusion = [[0] * LEVELS for _ in range(LEVELS)]  # [given][predicted]
    for m in compared:
        confusion[m.level_given][m.level_predicted] += 1
    agreed = sum(m.level_given == m.level_predicted for m in compared)
    return {"marks": len(compared), "agreed": agreed, "rate": agreed / len(compared) if compared else None,
            "confusion": confusion}
