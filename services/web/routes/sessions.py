"""Past sessions: the list, one session's page, its downloads and the same as JSON."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import msgspec
from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse

from services.web.context import Ctx, WebContext, report_or_404
from services.web.lean_report import timeline_entries
from services.web.templates import not_found_page, page, render
from shared.data.lesson import lesson
from shared.data.report_doc import Report, report_json
from shared.data.report_export import report_csv, report_csv_chunks  # the same CSV as `engagement report --csv`
from shared.data.summary import summary_html  # the same summary as `engagement report --pdf`
from shared.ops.pdf import PdfError, html_to_pdf

router = APIRouter()


@router.get("/sessions", response_class=HTMLResponse, include_in_schema=False)
def sessions_page(ctx: Ctx) -> str:
    return render("sessions", sessions=ctx.reports.list())


@router.get("/sessions/{session}", response_class=HTMLResponse, include_in_schema=False)
def session_page(session: str, ctx: Ctx) -> Response:
    if ctx.reports.path(session) is None:
        return not_found_page(f"session {session}")
    return page("session", session=session)


def _lean_file(ctx: WebContext, session: str, report: Report) -> Path | None:
    """The report's file when the pages hold its timeline lean (a long class) and this service shows it whole:
    what needs whole entries reads them from there (services/web/lean_report.py)."""
    path = ctx.reports.path(session)
    return path if path is not None and not report.class_level_only and ctx.reports.is_lean(session) else None


@router.get("/sessions/{session}/report.json", include_in_schema=False)
def download_json(session: str, ctx: Ctx) -> Response:
    report = report_or_404(ctx, session)
    headers = {"Content-Disposition": f'attachment; filename="{session}.json"'}
    path = _lean_file(ctx, session, report)
    if path is not None:
        return FileResponse(path, media_type="application/json", headers=headers)
    return Response(report_json(report), media_type="application/json", headers=headers)


@router.get("/sessions/{session}/report.csv", include_in_schema=False)
def download_csv(session: str, ctx: Ctx) -> Response:
    report = report_or_404(ctx, session)
    headers = {"Content-Disposition": f'attachment; filename="{session}.csv"'}
    path = _lean_file(ctx, session, report)
    if path is not None:  # row by row, from the file's entries: 350,000 rows of a 7x7 gallery's hour
        return StreamingResponse(report_csv_chunks(report, timeline_entries(path)), media_type="text/csv",
                                 headers=headers)
    return Response(report_csv(report), media_type="text/csv", headers=headers)


@router.get("/sessions/{session}/summary.pdf", include_in_schema=False)
def download_pdf(session: str, ctx: Ctx) -> Response:
    """The printable summary, printed by the headless Chromium (a few seconds; run in FastAPI's
    thread pool, so the pages and streams go on meanwhile)."""
    report = report_or_404(ctx, session)
    page_html = summary_html(report, ctx.live.alert_seconds)
    with tempfile.TemporaryDirectory(prefix="engagement-web-pdf-") as tmp:
        try:
            pdf = html_to_pdf(page_html, Path(tmp) / "summary.pdf").read_bytes()
        except PdfError as exc:
            raise HTTPException(503, f"the summary cannot be printed here: {exc}") from None
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{session}-summary.pdf"'})


@router.get("/api/sessions", summary="Past sessions, newest first")
def api_sessions(ctx: Ctx) -> list[dict[str, Any]]:
    """One summary per end-of-session report in REPORT_DIR (with its `streams`' ids)."""
    return ctx.reports.list()


@router.get("/api/sessions/{session}", summary="One session's report",
            responses={200: {"content": {"application/json": {}}}})
def api_session(session: str, ctx: Ctx) -> Response:
    """The same document as the JSON report the reporter wrote (schema 1)."""
    # Encoded from the report itself, not through dicts and FastAPI's encoder; a long class's is its file
    # (an hour of a 7x7 gallery is 350,000 timeline rows, which the pages hold lean).
    report = report_or_404(ctx, session)
    path = _lean_file(ctx, session, report)
    if path is not None:
        return FileResponse(path, media_type="application/json")
    return Response(msgspec.json.encode(report), media_type="application/json")


@router.get("/api/sessions/{session}/lesson", summary="One session as a whole: class line, alerts, time at 2+")
def api_session_lesson(session: str, ctx: Ctx) -> dict[str, Any]:
    """From the report: `class_line` ([[seconds into the lesson, share at level 0, 1, 2, 3], ...]
    in equal slices, shares adding up to 1), `alerts` (runs at level 2 or more that lasted
    `attention_alert_seconds`, with `start_offset`, `raised_offset` and `end_offset` in seconds
    into the lesson) and `time_at_level_2_or_more` per student. Class level only: the class
    line alone."""
    return lesson(report_or_404(ctx, session), ctx.live.alert_seconds)
