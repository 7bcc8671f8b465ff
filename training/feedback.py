"""The teacher's marks as labelled data: `engagement-train feedback --out marks.csv`.

One row per mark: id, session, stream (the student's: ids start at 1 in each stream of a
class; empty for a one-stream class), student, t (capture time, epoch seconds), level_given (the
teacher's label), level_predicted (the model's level then; empty if it had none), source,
created_at, then one column per numeric signal the model used (yaw, pitch, eye_openness,
...; empty where a mark lacks it). Read from Redis (shared/data/marks.py) and from the reports
in the report folders (the reporter writes each session's marks into its report: a class
run with a private Redis keeps its marks only there), each mark once; never an image.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import msgspec
import redis

from shared.data.marks import Mark, MarkStore, from_report, merge
from shared.data.report_doc import ReportError, load_report

FIXED_COLUMNS = ["id", "session", "stream", "student", "t", "level_given", "level_predicted", "source",
                 "created_at"]


class FeedbackError(ValueError):
    """Marks cannot be read (Redis unreachable, refused): one line for the user, exit 2."""


def load_marks(store: MarkStore, session: str | None = None, report_dirs: list[Path] | None = None,
               warn: Callable[[str], None] | None = None) -> list[Mark]:
    """Every mark (or one session's) from Redis and the reports in `report_dirs`, each once.

    Redis that cannot be read is an error, unless `warn` is given (the user named report
    folders): then `warn` says so and the reports' marks are still exported.
    """
    try:
        stored = store.for_session(session) if session else list(store.all())
    except redis.RedisError as exc:
        problem = (f"Redis refused the credentials ({exc}): set the password in REDIS_URL"
                   if isinstance(exc, redis.AuthenticationError) else f"cannot read the marks from Redis: {exc}")
        if warn is None:
            raise FeedbackError(problem) from None
        warn(f"{problem}; exporting the marks of the reports only")
        stored = []
    return merge(stored, *(reports_marks(d, session) for d in report_dirs or []))


def reports_marks(folder: Path, session: str | None = None) -> list[Mark]:
    """The marks of the reports (<session>.json) in `folder`; a file that is not a report is skipped."""
    paths = [folder / f"{session}.json"] if session else sorted(folder.glob("*.json"))
    marks: list[Mark] = []
    for path in paths:
        try:
            report = load_report(path)
        except (OSError, ReportError, msgspec.DecodeError):
            continue
        if report.session:
            marks += from_report(report)
    return marks


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
