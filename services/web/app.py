"""The pages, the JSON API and the live streams, as one FastAPI application.

Why FastAPI (on Starlette, served by uvicorn): the mark endpoint's body is a pydantic model,
so a malformed mark gets a 422 that names the field without hand-written checks, and the
OpenAPI document comes from the same code. Streams (MJPEG video, server-sent events) are
Starlette's StreamingResponse. FastAPI's own /docs page loads Swagger UI from a CDN, which
the Content-Security-Policy forbids, so /api/docs is a small page rendered here from the
OpenAPI document.

Every page loads only this service's /static files; the CSP says so to the browser.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from services.web.fanout import Fanout
from services.web.live import MAX_GAP_SECONDS, LiveState
from services.web.security import Guard
from services.web.sessions import Reports, class_level, prediction_at, report_csv
from shared.marks import MarkError, MarkStore, agreement, validate_mark

HERE = Path(__file__).resolve().parent
KEEPALIVE_SECONDS = 15.0


@dataclass
class WebContext:
    """What the routes read: built by the service, or by a test."""

    live: LiveState
    reports: Reports
    video: Fanout
    events: Fanout
    marks: MarkStore | None  # None: no Redis configured (past sessions only)
    class_level_only: bool
    token: str = ""


class MarkIn(BaseModel):
    """What the page sends; the model's level and signals are filled in by the server."""

    session: str = Field(min_length=1, max_length=128)
    student: int = Field(ge=0)
    stream: str = Field("", max_length=128, description="the student's stream (needed when the class has several)")
    t: float = Field(gt=0, description="capture time (Unix seconds) of the moment marked")
    level_given: int = Field(ge=0, le=3, description="the level the teacher sees, 0 engaged .. 3 checked out")


def _page(name: str, **values: str) -> str:
    text = (HERE / "pages" / f"{name}.html").read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value))
    return text


def _not_found_page(what: str) -> HTMLResponse:
    return HTMLResponse(_page("404", what=what), status_code=404)


def create_app(ctx: WebContext) -> FastAPI:
    app = FastAPI(title="Engagement monitor", version="1",
                  description="The live class, past sessions and the teacher's marks. Numbers only: no image "
                              "is stored.", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(RequestValidationError)
    async def unprocessable(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # One line per problem, each naming its field (body.level_given, ...).
        errors = [{"field": ".".join(str(p) for p in e["loc"][1:]) or "body", "message": e["msg"]}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    # --- pages -------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def live_page() -> str:
        return _page("live")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/sessions", response_class=HTMLResponse, include_in_schema=False)
    def sessions_page() -> str:
        rows = []
        for s in ctx.reports.list():
            sid = html.escape(s["session"])
            started = time.strftime("%Y-%m-%d %H:%M", time.gmtime(s["started"])) if s["started"] else "-"
            rows.append(f'<tr><td><a href="/sessions/{sid}">{sid}</a></td><td>{html.escape(s["class"] or "")}</td>'
                        f'<td>{started} UTC</td><td>{s["frames"]}</td><td>{s["students"]}</td>'
                        f'<td>{html.escape(s["model"] or "")}</td></tr>')
        body = "\n".join(rows) or '<tr><td colspan="6">No report yet.</td></tr>'
        return _page("sessions").replace("{{rows}}", body)

    @app.get("/sessions/{session}", response_class=HTMLResponse, include_in_schema=False)
    def session_page(session: str) -> Response:
        if ctx.reports.path(session) is None:
            return _not_found_page(f"session {session}")
        return HTMLResponse(_page("session", session=session))

    @app.get("/sessions/{session}/report.json", include_in_schema=False)
    def download_json(session: str) -> Response:
        report = _report_or_404(session)
        return Response(json.dumps(report, indent=1), media_type="application/json",
                         headers={"Content-Disposition": f'attachment; filename="{session}.json"'})

    @app.get("/sessions/{session}/report.csv", include_in_schema=False)
    def download_csv(session: str) -> Response:
        report = _report_or_404(session)
        return Response(report_csv(report), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{session}.csv"'})

    @app.get("/api/docs", response_class=HTMLResponse, include_in_schema=False)
    def api_docs() -> str:
        rows = []
        for path, ops in app.openapi()["paths"].items():
            for method, op in ops.items():
                rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                            f"<td>{html.escape(op.get('summary', ''))}</td>"
                            f"<td>{html.escape(op.get('description', '').strip())}</td></tr>")
        return _page("docs").replace("{{rows}}", "\n".join(rows))

    # --- API ---------------------------------------------------------------------------
    def _report_or_404(session: str) -> dict[str, Any]:
        report = ctx.reports.load(session)
        if report is None:
            raise HTTPException(404, f"no report of session {session!r}")
        return class_level(report) if ctx.class_level_only else report

    @app.get("/api/live", summary="The current session")
    def api_live() -> dict[str, Any]:
        """`session`, `totals`, the model and its note, `streams` (the class's stream ids), and
        `students` (each with `stream`, `id`, `level`, `probs`, `last_seen`,
        `seconds_at_level_2_or_more` and the last five minutes as `history` [[t_capture, level], ...]);
        with several streams also `stream_totals` (each stream's) and `stream_ends` (streams that
        ended while the class goes on: `ended`, `end_reason`). No students when CLASS_LEVEL_ONLY
        or EU_AI_ACT_MODE is set."""
        return ctx.live.snapshot(history=True)

    @app.get("/api/sessions", summary="Past sessions, newest first")
    def api_sessions() -> list[dict[str, Any]]:
        """One summary per end-of-session report in REPORT_DIR (with its `streams`' ids)."""
        return ctx.reports.list()

    @app.get("/api/sessions/{session}", summary="One session's report")
    def api_session(session: str) -> dict[str, Any]:
        """The same document as the JSON report the reporter wrote (schema 1)."""
        return _report_or_404(session)

    @app.get("/api/sessions/{session}/marks", summary="The teacher's marks of a session and the agreement")
    def api_session_marks(session: str) -> dict[str, Any]:
        """Every mark of the session and how often the model agreed with the teacher."""
        if ctx.class_level_only:
            raise HTTPException(404, "marks are off (class-level only)")
        try:
            marks = _marks_store().for_session(session)
        except redis.RedisError as exc:
            raise HTTPException(503, f"marks cannot be read: Redis unavailable ({type(exc).__name__})") from None
        return {"session": session, "marks": [asdict(m) for m in marks], "agreement": agreement(marks)}

    @app.post("/api/marks", status_code=201, summary="Mark a student's level at a moment")
    def api_mark(mark: MarkIn) -> dict[str, Any]:
        """The page sends session, student, t and level_given; the model's level and signals at that
        moment are filled in here (from the live state, or from the report for a past session).
        A malformed mark gets 422 naming the field."""
        if ctx.class_level_only:
            raise HTTPException(404, "marks are off (class-level only)")
        store = _marks_store()
        found = ctx.live.prediction_at(mark.session, mark.stream, mark.student, mark.t)
        if found is not None:
            (predicted, signals), source = found, "live"
        else:
            report = ctx.reports.load(mark.session)
            if report is None:
                if ctx.live.snapshot(history=False)["session"] == mark.session:
                    raise _unprocessable("t", "no prediction of this student near that moment")
                raise HTTPException(404, f"unknown session {mark.session!r}")
            predicted = prediction_at(report, mark.stream, mark.student, mark.t, MAX_GAP_SECONDS)
            signals, source = {}, "session"
            if predicted is None:
                raise _unprocessable("t", "no prediction of this student near that moment")
        try:
            record = validate_mark({"session": mark.session, "stream": mark.stream, "student": str(mark.student),
                                    "t": mark.t,
                                    "level_given": mark.level_given, "level_predicted": predicted,
                                    "signals": signals, "created_at": time.time(), "source": source})
        except MarkError as exc:
            raise _unprocessable(exc.field, exc.message) from None
        try:
            mark_id = store.add(record)
        except redis.RedisError as exc:
            raise HTTPException(503, f"the mark was not stored: Redis unavailable ({type(exc).__name__})") from None
        return {"id": mark_id, "mark": asdict(record)}

    def _marks_store() -> MarkStore:
        if ctx.marks is None:
            raise HTTPException(503, "no Redis configured: marks cannot be stored")
        return ctx.marks

    # --- streams -----------------------------------------------------------------------
    @app.get("/api/live/events", summary="The live session as server-sent events")
    async def live_events() -> StreamingResponse:
        """One `data:` JSON event per update (the /api/live document without `history`)."""
        sub = ctx.events.subscribe()

        async def stream():  # type: ignore[no-untyped-def]
            try:
                yield b"retry: 2000\n\n"
                while True:
                    try:
                        item = await sub.get(KEEPALIVE_SECONDS)
                    except ConnectionAbortedError:
                        return
                    yield b": keep-alive\n\n" if item is None else item
            finally:
                sub.close()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/api/live/video.mjpg", summary="The annotated video (MJPEG)")
    async def live_video(stream: str = "") -> Response:
        """The reporter's overlay as multipart JPEG; each part carries X-Capture-Time, X-Seq and
        X-Stream. `?stream=<id>`: that stream's video only (the page shows one tile per stream);
        without it every frame of the session. Not served when CLASS_LEVEL_ONLY or
        EU_AI_ACT_MODE is set."""
        if ctx.class_level_only:
            return PlainTextResponse("video is off (class-level only)", status_code=404)
        feed = ctx.video.feed(stream, known=ctx.live.has_stream(stream))
        if feed is None:
            return PlainTextResponse(f"no video of stream {stream!r} yet", status_code=404)
        sub = feed.subscribe()

        async def stream():  # type: ignore[no-untyped-def]
            try:
                while True:
                    try:
                        item = await sub.get(KEEPALIVE_SECONDS)
                    except ConnectionAbortedError:
                        return
                    if item is not None:
                        yield item
            finally:
                sub.close()

        return StreamingResponse(stream(), media_type="multipart/x-mixed-replace; boundary=frame",
                                 headers={"Cache-Control": "no-store"})

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> Response:
        detail = getattr(exc, "detail", "not found")
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": detail}, status_code=404)
        return _not_found_page(request.url.path)

    app.add_middleware(Guard, token=ctx.token)
    return app


def _unprocessable(field: str, message: str) -> HTTPException:
    return HTTPException(422, [{"field": field, "message": message}])


def mjpeg_part(jpeg: bytes, t_capture: float, seq: int, stream: str = "") -> bytes:
    # The stream id goes into a header: keep it to printable ASCII (an id is the operator's text).
    safe = "".join(c for c in stream if 32 < ord(c) < 127)[:64]
    head = (f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
            f"X-Capture-Time: {t_capture:.6f}\r\nX-Seq: {seq}\r\nX-Stream: {safe}\r\n\r\n").encode("ascii")
    return head + jpeg + b"\r\n"


def sse_event(document: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(document, separators=(",", ":")).encode("utf-8") + b"\n\n"

