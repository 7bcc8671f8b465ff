"""Past reports are read as few times and held as briefly as the pages allow: a mark on a past
session read its report two or three times (2.3 s each for an hour of a 7x7 gallery, 51 MB), and
the class page held a term of lessons at once (20 hour-long room lessons: over half a GB, in a web
container limited to 160 MB)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.web import sessions
from services.web.context import WebContext
from services.web.routes.classes import _comparison
from services.web.sessions import Reports
from tests.support.reports import write_built_report


def _write_lesson(folder: Path, session: str, started: float, students: int = 8, seconds: int = 600) -> None:
    """One lesson of class c1: `students` faces at 2 FPS for `seconds`, levels changing every 20 s."""
    write_built_report(folder, session, students=students, frames=seconds * 2, started=started, level_every=40)


def _peak(work) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_class_page_holds_one_report_at_a_time(tmp_path):
    lessons = 6
    for k in range(lessons):  # written newest first: the page orders them by their start
        _write_lesson(tmp_path, f"lesson-{k}", 1_700_000_000.0 - k * 7 * 86400)
    one = _peak(lambda: Reports(tmp_path).load("lesson-0"))
    ctx = WebContext(live=SimpleNamespace(alert_seconds=60.0), reports=Reports(tmp_path), video=None,  # type: ignore[arg-type]
                     events=None, marks=None, class_level_only=False)  # type: ignore[arg-type]
    ctx.reports.list()  # the summaries, read on every page load before the comparison
    compared: dict = {}
    whole = _peak(lambda: compared.update(_comparison(ctx, "c1")))
    assert [lesson["session"] for lesson in compared["lessons"]] == [f"lesson-{k}" for k in reversed(range(lessons))]
    assert len(compared["students"]) == 8 and all(len(s["seconds"]) == lessons for s in compared["students"])
    # Read all at once, the peak was about `lessons` reports (6.1 times one on the code before).
    assert whole < 2 * one, (whole, one)


def test_a_report_is_read_once_until_its_file_changes(tmp_path, monkeypatch):
    parsed: list[Path] = []
    real = sessions.load_report

    def counting(source):  # noqa: ANN001, ANN202 (load_report's)
        parsed.append(source)
        return real(source)

    monkeypatch.setattr(sessions, "load_report", counting)
    _write_lesson(tmp_path, "past", 1_700_000_000.0, students=2, seconds=30)
    reports = Reports(tmp_path)
    first = reports.load("past")
    assert first is not None and reports.load("past") is first and len(parsed) == 1
    _write_lesson(tmp_path, "past", 1_700_000_000.0, students=3, seconds=30)  # the reporter wrote it again
    again = reports.load("past")
    assert again is not None and len(again.students) == 3 and len(parsed) == 2
    (tmp_path / "past.json").write_text("{not json")
    assert reports.load("past") is None  # a file that is no report any more is not shown from memory


@pytest.mark.parametrize("class_level_only", [False, True])
def test_the_session_api_is_the_report_file(tmp_path, class_level_only):
    from fastapi.testclient import TestClient

    from services.web.app import create_app

    _write_lesson(tmp_path, "past", 1_700_000_000.0, students=2, seconds=30)
    ctx = WebContext(live=SimpleNamespace(alert_seconds=60.0), reports=Reports(tmp_path), video=None,  # type: ignore[arg-type]
                     events=None, marks=None, class_level_only=class_level_only)  # type: ignore[arg-type]
    answer = TestClient(create_app(ctx), base_url="http://127.0.0.1").get("/api/sessions/past")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json", answer.text
    doc = answer.json()
    written = json.loads((tmp_path / "past.json").read_text())
    if class_level_only:
        assert doc["timeline"] == [] and doc["students"] == [] and doc["totals"] == written["totals"]
    else:
        assert doc == written
