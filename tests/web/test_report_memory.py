"""Past reports are read as few times and held as briefly as the pages allow: a mark on a past
session read its report two or three times (2.3 s each for an hour of a 7x7 gallery, 51 MB), and
the class page held a term of lessons at once (20 hour-long room lessons: over half a GB, in a web
container limited to 160 MB)."""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.web import lean_report, sessions
from services.web.context import WebContext
from services.web.lean_report import timeline_entries
from services.web.routes.classes import _comparison
from services.web.sessions import Reports
from shared.data.report_doc import UNSET, from_dict, load_report, report_bytes
from shared.data.report_export import report_csv
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
    real = sessions.load_for_pages

    def counting(source):  # noqa: ANN001, ANN202 (load_for_pages's)
        parsed.append(source)
        return real(source)

    monkeypatch.setattr(sessions, "load_for_pages", counting)
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


def _write_long_lesson(folder: Path, session: str) -> dict:
    """A lesson whose every entry carries the baseline's signals, box and confidence, as a long class's do."""
    doc = write_built_report(folder, session, students=7, frames=600, level_every=9)
    for i, e in enumerate(doc["timeline"]):
        e.update(box=[10 + i % 50, 20, 95, 93], conf=0.8857,
                 probs=[0.4, 0.3, 0.29995187674271337, 4.8123257286607546e-05],
                 signals={"yaw": -20.9318 + i % 7, "pitch": -0.7792, "roll": 0.7789, "eye_openness": 0.2098,
                          "mesh_confidence": 1.0, "frames": 1, "score": 0.5621, "reason": "yaw"})
    (folder / f"{session}.json").write_bytes(report_bytes(from_dict(doc)))
    return doc


def test_a_long_class_is_held_lean_and_its_pages_and_downloads_are_the_same(tmp_path, monkeypatch):
    """Past LEAN_AFTER entries the pages hold each entry without what they do not compute from (an hour of a
    7x7 gallery took 766 MB to show its lesson, 1 GB its report, in a web limited to 512M on an AGX Orin):
    the lesson, the report, its JSON and CSV downloads are the ones the whole report makes."""
    from fastapi.testclient import TestClient

    from services.web.app import create_app

    _write_long_lesson(tmp_path, "long")
    path = tmp_path / "long.json"
    whole = load_report(path)
    ctx = WebContext(live=SimpleNamespace(alert_seconds=60.0), reports=Reports(tmp_path), video=None,  # type: ignore[arg-type]
                     events=None, marks=None, class_level_only=False)  # type: ignore[arg-type]
    client = TestClient(create_app(ctx), base_url="http://127.0.0.1")
    expected = {url: client.get(url) for url in ("/api/sessions/long", "/api/sessions/long/lesson",
                                                 "/sessions/long/report.json", "/sessions/long/report.csv")}
    assert not ctx.reports.is_lean("long")
    monkeypatch.setattr(lean_report, "LEAN_AFTER", 100)
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    lean = ctx.reports.load("long")
    assert lean is not None and ctx.reports.is_lean("long") and len(lean.timeline) == len(whole.timeline) == 4200
    assert lean.timeline[5].probs == [] and lean.timeline[5].signals is UNSET
    assert [(e.stream, e.seq, e.student, e.level) for e in lean.timeline] == \
        [(e.stream, e.seq, e.student, e.level) for e in whole.timeline]
    assert list(timeline_entries(path)) == whole.timeline
    for url, before in expected.items():
        now = client.get(url)
        assert now.status_code == before.status_code == 200, url
        assert (now.json() == before.json()) if url.startswith("/api") else (now.content == before.content), url
    assert client.get("/sessions/long/report.csv").text == report_csv(whole)
    assert client.get("/sessions/long/report.json").content == path.read_bytes()
    # What a page holds of it: the entries without their signals, the file mapped rather than read.
    read_whole = _peak(lambda: load_report(path))
    read_lean = _peak(lambda: lean_report.load_for_pages(path))
    assert read_lean < read_whole / 2, (read_lean, read_whole)
