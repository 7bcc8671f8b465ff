"""The teacher's marks: read a session's with the agreement, add one.

A mark of a class not yet reported is kept on this box's disk before Redis (JOURNAL_DIR,
shared/data/marks_journal.py): the report carries it though Redis restart empty or be away.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

import redis
from fastapi import APIRouter, HTTPException
from prometheus_client import Counter
from pydantic import BaseModel, Field

from services.web.context import Ctx, WebContext, unprocessable
from services.web.live import MAX_GAP_SECONDS
from services.web.sessions import prediction_at
from shared.data.marks import Mark, MarkError, MarkStore, agreement, from_report, merge, validate_mark
from shared.data.marks_journal import append_mark, read_marks

router = APIRouter()
log = logging.getLogger("web")

MARKS_DISK_ERRORS = Counter("engagement_web_mark_disk_errors_total",
                            "Marks of a class not yet reported that could not be kept on disk (Redis alone holds them)")
MARKS_DISK_ONLY = Counter("engagement_web_marks_disk_only_total",
                          "Marks kept on disk but not in Redis (Redis unavailable): the report still carries them")


class MarkIn(BaseModel):
    """What the page sends; the model's level and signals are filled in by the server."""

    session: str = Field(min_length=1, max_length=128)
    student: int = Field(ge=0)
    stream: str = Field("", max_length=128, description="the student's stream (needed when the class has several)")
    t: float = Field(gt=0, description="capture time (Unix seconds) of the moment marked")
    level_given: int = Field(ge=0, le=3, description="the level the teacher sees, 0 engaged .. 3 checked out")


def _marks_on(ctx: WebContext) -> None:
    if ctx.class_level_only:
        raise HTTPException(404, "marks are off (class-level only)")


def _store(ctx: WebContext) -> MarkStore:
    if ctx.marks is None:
        raise HTTPException(503, "no Redis configured: marks cannot be stored")
    return ctx.marks


@router.get("/api/sessions/{session}/marks", summary="The teacher's marks of a session and the agreement")
def api_session_marks(session: str, ctx: Ctx) -> dict[str, Any]:
    """Every mark of the session and how often the model agreed with the teacher: those in Redis
    and those the session's report carries (the class's own Redis may be gone), each once."""
    _marks_on(ctx)
    report = ctx.reports.load(session)
    in_report = from_report(report) if report else []
    on_disk = read_marks(ctx.journal_dir, session) if ctx.journal_dir and report is None else []
    try:
        stored = _store(ctx).for_session(session)
    except (redis.RedisError, HTTPException) as exc:
        if report is None and not on_disk:  # nothing to show: say why
            reason = exc.detail if isinstance(exc, HTTPException) else f"Redis unavailable ({type(exc).__name__})"
            raise HTTPException(503, f"marks cannot be read: {reason}") from None
        stored = []  # the report's (or the disk's) marks still show
    marks = merge(stored, on_disk, in_report)
    return {"session": session, "marks": [asdict(m) for m in marks], "agreement": agreement(marks)}


def _predicted(ctx: WebContext, mark: MarkIn) -> tuple[int, dict[str, Any], str]:
    """The model's level at the marked moment, its signals and where they came from."""
    found = ctx.live.prediction_at(mark.session, mark.stream, mark.student, mark.t)
    if found is not None:
        predicted, signals = found
        return predicted, signals, "live"
    report = ctx.reports.load(mark.session)
    if report is None:
        if ctx.live.snapshot(history=False)["session"] == mark.session:
            raise unprocessable("t", "no prediction of this student near that moment")
        raise HTTPException(404, f"unknown session {mark.session!r}")
    level = prediction_at(report, mark.stream, mark.student, mark.t, MAX_GAP_SECONDS)
    if level is None:
        raise unprocessable("t", "no prediction of this student near that moment")
    return level, {}, "session"


def _record(mark: MarkIn, predicted: int, signals: dict[str, Any], source: str) -> Mark:
    try:
        return validate_mark({"session": mark.session, "stream": mark.stream, "student": str(mark.student),
                              "t": mark.t, "level_given": mark.level_given, "level_predicted": predicted,
                              "signals": signals, "created_at": time.time(), "source": source})
    except MarkError as exc:
        raise unprocessable(exc.field, exc.message) from None


@router.post("/api/marks", status_code=201, summary="Mark a student's level at a moment")
def api_mark(mark: MarkIn, ctx: Ctx) -> dict[str, Any]:
    """The page sends session, student, t and level_given; the model's level and signals at that
    moment are filled in here (from the live state, or from the report for a past session).
    A malformed mark gets 422 naming the field. A mark of a class not yet reported is kept on disk
    first; with Redis away it is answered 201 all the same, `kept` saying where it is."""
    _marks_on(ctx)
    store = _store(ctx)
    record = _record(mark, *_predicted(ctx, mark))
    on_disk = _keep_on_disk(ctx, record)
    try:
        mark_id = store.add(record)
    except redis.RedisError as exc:
        if not on_disk:
            raise HTTPException(503, f"the mark was not stored: Redis unavailable ({type(exc).__name__})") from None
        MARKS_DISK_ONLY.inc()
        log.warning("a mark of %s kept on disk only, Redis unavailable (%s): the report carries it",
                    record.session, type(exc).__name__)
        return {"id": "", "mark": asdict(record), "kept": ["disk"]}
    return {"id": mark_id, "mark": asdict(record), "kept": ["redis", "disk"] if on_disk else ["redis"]}


def _keep_on_disk(ctx: WebContext, record: Mark) -> bool:
    """Journal a mark of a class not yet reported (the reporter reads it); False when not kept."""
    if not ctx.journal_dir or ctx.reports.load(record.session) is not None:
        return False  # no journal here, or a past class: its report is written, Redis alone keeps new marks
    try:
        append_mark(ctx.journal_dir, record)
    except OSError as exc:
        MARKS_DISK_ERRORS.inc()
        log.warning("a mark of %s could not be kept on disk (%s): Redis alone holds it", record.session, exc)
        return False
    # The reporter reads the file again once the report is on disk: a report there now may have been
    # read before this mark was written, and only Redis is sure to hold it.
    return ctx.reports.path(record.session) is None
