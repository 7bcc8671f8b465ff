"""The web app's shape (routers, short functions) and its templates' escaping."""

from __future__ import annotations

import ast

from services.web.templates import ENV, render
from shared.ops.config import REPO_ROOT

WEB = REPO_ROOT / "services" / "web"
MAX_FUNCTION_LINES = 60


def test_no_function_in_the_web_service_is_over_60_lines():
    long = []
    for path in sorted(WEB.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_every_page_escapes_what_it_shows():
    evil = '<script>alert("x")</script>'
    assert ENV.autoescape("page.html")  # on for every .html template
    pages = {"404": {"what": evil}, "session": {"session": evil},
             "sessions": {"sessions": [{"session": evil, "class": evil, "started": 0, "frames": 1, "students": 1,
                                        "model": evil}]},
             "docs": {"operations": [{"method": "GET", "path": evil, "summary": evil, "description": evil}]}}
    for name, values in pages.items():
        text = render(name, **values)
        assert "<script>alert" not in text and "&lt;script&gt;alert" in text, name


def test_the_sessions_list_says_when_there_is_no_report():
    text = render("sessions", sessions=[])
    assert '<td colspan="6">No report yet.</td>' in text
