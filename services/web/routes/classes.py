"""/classes/<class_id>: the lessons of one class side by side, from the report files (so it
works after Redis forgot them): each lesson's class line, each student's time at level 2 or
more lesson by lesson."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse

from services.web.context import Ctx, WebContext
from services.web.sessions import class_level
from services.web.templates import render
from shared.data.lesson import compare_lessons

router = APIRouter()
CLASS_LESSONS = 20  # the latest lessons compared: a term of weekly lessons, a page still readable


def _comparison(ctx: WebContext, class_id: str) -> dict[str, Any]:
    summaries = [s for s in ctx.reports.list() if s["class"] == class_id][:CLASS_LESSONS]  # newest first
    # One report read at a time, its lesson kept and the report let go (compare_lessons): read all
    # at once, a term of hour-long room lessons was over half a GB in a service limited to 160 MB.
    reports = (r for r in (ctx.reports.load(s["session"]) for s in summaries) if r is not None)
    compared = compare_lessons((class_level(r) for r in reports) if ctx.class_level_only else reports,
                               ctx.live.alert_seconds)
    if not compared["lessons"]:
        raise HTTPException(404, f"no report of class {class_id!r}")
    return {"class": class_id, **compared}


@router.get("/classes/{class_id}", response_class=HTMLResponse, include_in_schema=False)
def class_page(class_id: str, ctx: Ctx) -> str:
    return render("class", **_comparison(ctx, class_id))


@router.get("/api/classes/{class_id}", summary="The lessons of one class compared")
def api_class(class_id: str, ctx: Ctx) -> dict[str, Any]:
    """The class's latest lessons (at most 20, oldest first) from the report files, each with its
    `class_line` and `alerts` as /api/sessions/<id>/lesson gives them; `students` with each
    one's `seconds` at level 2 or more lesson by lesson (null: not in that lesson), followed
    by their display name when the reports have one."""
    return _comparison(ctx, class_id)
