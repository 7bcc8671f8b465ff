"""What the routes read (the live state, the reports, the streams, the marks) and the helpers
several routers share. The service builds one WebContext; a test can build its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from services.web.fanout import Fanout, VideoFeeds
from services.web.live import LiveState
from services.web.security import AllowedHosts
from services.web.sessions import Reports, class_level
from shared.data.marks import MarkStore
from shared.data.report_doc import Report


@dataclass
class WebContext:
    """What the routes read: built by the service, or by a test."""

    live: LiveState
    reports: Reports
    video: VideoFeeds
    events: Fanout
    marks: MarkStore | None  # None: no Redis configured (past sessions only)
    class_level_only: bool
    token: str = ""
    hosts: AllowedHosts | None = None  # None: loopback's names and any IP address
    journal_dir: str = ""  # where the marks of a class not yet reported are kept on disk ("": not kept)


def web_context(request: Request) -> WebContext:
    """The routes' dependency (`ctx: Ctx`): the context create_app stored on the app."""
    ctx: WebContext = request.app.state.ctx
    return ctx


Ctx = Annotated[WebContext, Depends(web_context)]  # a route's parameter `ctx: Ctx`


def report_or_404(ctx: WebContext, session: str) -> Report:
    """A session's report as this service may show it (class level only when so configured)."""
    report = ctx.reports.load(session)
    if report is None:
        raise HTTPException(404, f"no report of session {session!r}")
    return class_level(report) if ctx.class_level_only else report


def unprocessable(field: str, message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors: one entry naming the field."""
    return HTTPException(422, [{"field": field, "message": message}])
