"""A whole report as its file holds it (a dict), for tests that build one part by hand.

Readers take the typed Report (shared/data/report_doc.py), which has every section; a test that
cares about one (the timeline, the marks) puts its own into a real report file's and converts it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BASE = Path(__file__).parents[1] / "shared" / "data" / "reports" / "one-stream-named.json"


def report_dict(**parts: Any) -> dict[str, Any]:
    """A real report file's document with `parts` (top-level keys) put in its place."""
    doc: dict[str, Any] = json.loads(BASE.read_text(encoding="utf-8"))
    return {**doc, **parts}
