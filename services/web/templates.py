"""The pages as Jinja2 templates (services/web/templates/), escaped by default.

Autoescaping is on for every template: a session id, a class name or a model name from a
report is the operator's text and must never become markup. No template marks a value safe.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).resolve().parent / "templates"


def utc_minute(t: float | None) -> str:
    """A Unix time as the sessions list shows it ("-" when unknown)."""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) if t else "-"


def duration(seconds: float) -> str:
    """Seconds as the pages write a duration: "45 s", "2 min", "1 min 30 s"."""
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    if not minutes:
        return f"{secs} s"
    return f"{minutes} min" + (f" {secs} s" if secs else "")


def _environment() -> Environment:
    # StrictUndefined: a value a template names but a route forgot is an error, not an empty cell.
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    env.filters["utc_minute"] = utc_minute
    env.filters["duration"] = duration
    return env


ENV = _environment()


def render(name: str, **values: Any) -> str:
    return ENV.get_template(f"{name}.html").render(**values)


def page(name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(render(name, **values), status_code=status_code)


def not_found_page(what: str) -> HTMLResponse:
    return page("404", status_code=404, what=what)
