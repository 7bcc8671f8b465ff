"""The pages, the JSON API and the live streams, as one FastAPI application.

Why FastAPI (on Starlette, served by uvicorn): the mark endpoint's body is a pydantic model,
so a malformed mark gets a 422 that names the field without hand-written checks, and the
OpenAPI document comes from the same code. Streams (MJPEG video, server-sent events) are
Starlette's StreamingResponse. The pages are Jinja2 templates with autoescaping
(services/web/templates.py); the routes are in services/web/routes/, one module per group.

Every page loads only this service's /static files; the CSP says so to the browser.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from services.web.context import WebContext
from services.web.routes import classes, docs, live, marks, sessions
from services.web.security import Guard
from services.web.templates import not_found_page

HERE = Path(__file__).resolve().parent


async def unprocessable(_request: Request, exc: RequestValidationError) -> JSONResponse:
    # One line per problem, each naming its field (body.level_given, ...).
    errors = [{"field": ".".join(str(p) for p in e["loc"][1:]) or "body", "message": e["msg"]}
              for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


async def not_found(request: Request, exc: Exception) -> Response:
    """The API answers JSON; a page answers the 404 page."""
    detail = getattr(exc, "detail", "not found")
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": detail}, status_code=404)
    return not_found_page(request.url.path)


def create_app(ctx: WebContext) -> FastAPI:
    app = FastAPI(title="Engagement monitor", version="1",
                  description="The live class, past sessions and the teacher's marks. Numbers only: no image "
                              "is stored.", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.ctx = ctx  # the routes read it through services.web.context.web_context
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(RequestValidationError, unprocessable)  # type: ignore[arg-type]  # Starlette types the handler loosely
    app.add_exception_handler(404, not_found)
    for group in (live, sessions, marks, classes, docs):
        app.include_router(group.router)
    app.add_middleware(Guard, token=ctx.token, hosts=ctx.hosts)
    return app
