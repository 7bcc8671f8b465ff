"""/api/docs: the API as a table, from the app's own OpenAPI document.

FastAPI's own /docs page loads Swagger UI from a CDN, which the Content-Security-Policy
forbids, so this small page replaces it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.web.templates import render

router = APIRouter()


@router.get("/api/docs", response_class=HTMLResponse, include_in_schema=False)
def api_docs(request: Request) -> str:
    operations = [{"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                   "description": op.get("description", "").strip()}
                  for path, ops in request.app.openapi()["paths"].items() for method, op in ops.items()]
    return render("docs", operations=operations)
