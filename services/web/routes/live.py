"""The live class: its page, its JSON document, its events and its video."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from services.web.context import Ctx
from services.web.streams import streaming
from services.web.templates import render

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def live_page(ctx: Ctx) -> str:
    return render("live", alert_seconds=ctx.live.alert_seconds)


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    return Response(status_code=204)


@router.get("/api/live", summary="The current session")
def api_live(ctx: Ctx) -> dict[str, Any]:
    """`session`, `totals`, the model and its note, `streams` (the class's stream ids), and
    `students` (each with `stream`, `id`, `level`, `probs`, `last_seen`,
    `seconds_at_level_2_or_more` and the last five minutes as `history` [[t_capture, level], ...]),
    `alerts` (the students at level 2 or more for longer than `attention_alert_seconds`, longest
    first: see /api/live/alerts);
    with several streams also `stream_totals` (each stream's) and `stream_ends` (streams that
    ended while the class goes on: `ended`, `end_reason`). No students when CLASS_LEVEL_ONLY
    or EU_AI_ACT_MODE is set."""
    return ctx.live.snapshot(history=True)


@router.get("/api/live/alerts", summary="Who needed attention in the live session")
def api_live_alerts(ctx: Ctx) -> dict[str, Any]:
    """Every alert of the live session: a student at level 2 or more for longer than
    `attention_alert_seconds` (ATTENTION_ALERT_SECONDS). Each has `stream`, `student`, `name`
    (with a roster or screen names), `start` (the run's first prediction at level 2+), `raised`
    (when it crossed the threshold), `last`, `end` (null while it lasts), `seconds` and
    `worst_level`. The open ones, longest first, are also `alerts` in /api/live and in every
    event. Empty when CLASS_LEVEL_ONLY or EU_AI_ACT_MODE is set."""
    return ctx.live.alerts()


@router.get("/api/live/events", summary="The live session as server-sent events")
async def live_events(ctx: Ctx) -> Response:
    """One `data:` JSON event per update (the /api/live document without `history`)."""
    return streaming(ctx.events.subscribe(), "text/event-stream", first=b"retry: 2000\n\n",
                     keepalive=b": keep-alive\n\n", headers={"X-Accel-Buffering": "no"})


@router.get("/api/live/video.mjpg", summary="The annotated video (MJPEG)")
async def live_video(ctx: Ctx, stream: str = "") -> Response:
    """The reporter's overlay as multipart JPEG; each part carries X-Capture-Time, X-Seq and
    X-Stream. `?stream=<id>`: that stream's video only (the page shows one tile per stream);
    without it every frame of the session. Not served when CLASS_LEVEL_ONLY or
    EU_AI_ACT_MODE is set."""
    if ctx.class_level_only:
        return PlainTextResponse("video is off (class-level only)", status_code=404)
    feed = ctx.video.feed(stream, known=ctx.live.has_stream(stream))
    if feed is None:
        return PlainTextResponse(f"no video of stream {stream!r} yet", status_code=404)
    return streaming(feed.subscribe(), "multipart/x-mixed-replace; boundary=frame")
