"""The teacher's marks as labelled data: `engagement-train feedback --out marks.csv`.

One row per mark: id, session, stream (the student's: ids start at 1 in each stream of a
class; empty for a one-stream class), student, t (capture time, epoch seconds), level_given (the
teacher's label), level_predicted (the model's level then; empty if it had none), source,
created_at, then one column per numeric signal the model used (yaw, pitch, eye_openness,
...; empty where a mark lacks it). Read from Redis (shared/marks.py); never an image.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import redis

from shared.marks import Mark, MarkStore

FIXED_COLUMNS = ["id", "session", "stream", "student", "t", "level_given", "level_predicted", "source",
                 "created_at"]


class FeedbackError(ValueError):
    """Marks cannot be read (Redis unreachable, refused): one line for the user, exit 2."""


def load_marks(store: MarkStore, session: str | None = None) -> list[Mark]:
    try:
        return store.for_session(session) if session else list(store.all())
    except redis.AuthenticationError as exc:
        raise FeedbackError(f"Redis refused the credentials ({exc}): set the password in REDIS_URL") from None
    except redis.RedisError as exc:
        raise FeedbackError(f"cannot read the marks from Redis: {exc}") from None


def write_atomically(out: Path, text: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(marks: list[Mark], out: Path) -> list[str]:
    """Write the rows (atomically: a half-written file never replaces a good one); the columns."""
    signals = sorted({name for m in marks for name in m.signals})
    columns = FIXED_COLUMNS + signals
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for m in marks:
                fixed = [m.id, m.session, m.stream, m.student, repr(m.t), m.level_given,
                         "" if m.level_predicted is None else m.level_predicted, m.source, repr(m.created_at)]
                writer.writerow(fixed + [m.signals.get(name, "") for name in signals])
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return columns
