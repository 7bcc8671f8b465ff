"""The teacher's marks: read a session's with the agreement, add one."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import redis
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from services.web.context import Ctx, WebContext, unprocessable
from services.web.live import MAX_GAP_SECONDS
from services.web.sessions import prediction_at
from shared.data.marks import Mark, MarkError, MarkStore, agreement, from_report, merge, validate_mark

router = APIRouter()


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
    try:
        stored = _store(ctx).for_session(session)
    except (redis.RedisError, HTTPException) as exc:
        if report is None:  # nothing to show: say why
            reason = exc.detail if isinstance(exc, HTTPException) else f"Redis unavailable ({type(exc).__name__})"
            raise HTTPException(503, f"marks cannot be read: {reason}") from None
        stored = []  # the report's marks still show; new ones cannot be stored until Redis is back
    marks = merge(stored, in_report)
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
    A malformed mark gets 422 naming the field."""
    _marks_on(ctx)
    store = _store(ctx)
    record = _record(mark, *_predicted(ctx, mark))
    try:
        mark_id = store.add(record)
    except redis.RedisError as exc:
        raise HTTPException(503, f"the mark was not stored: Redis unavailable ({type(exc).__name__})") from None
    return {"id": mark_id, "mark": asdict(record)}
