"""A mark the web journals while the reporter writes the class's report is in the report.

The web journals a mark of a class not yet reported (shared/data/marks_journal.py) and then looks for the
report: one there already may have been built before the mark was written, so the mark is then said kept
by Redis alone. The reporter reads the journaled marks again once the report is on disk: before, a mark
journaled between the reporter's read and the file's removal was deleted with the file, and with Redis
away it was lost though the page had answered 201 `kept: ["disk"]`."""

from __future__ import annotations

import json
import time
from pathlib import Path

from services.reporter.service import ReporterService
from shared.data.marks import Mark
from shared.data.marks_journal import append_mark, marks_path
from tests.harness import settings_for
from tests.support.env import REDIS_URL
from tests.support.sessions import record_session


def _mark(student: str, t: float, given: int) -> Mark:
    return Mark("s1", student, t, given, None, {}, time.time(), "live")


def _ended_class_with_a_journaled_mark(store, tmp_path) -> tuple[ReporterService, Path]:
    """A class ended, not yet reported, one mark in its journal; the reporter that will report it."""
    record_session(store, "s1")
    store.end_session("s1", 2e9, "end_of_file", "class-t", "cam0")
    journal = tmp_path / "journal"
    append_mark(journal, _mark("0", 1e9 + 1, 2))  # made during the class: in the file before the report
    service = ReporterService(settings_for("reporter", redis_url=REDIS_URL, redis_prefix=store.prefix,
                                           report_dir=str(tmp_path / "reports"), journal_dir=str(journal),
                                           headless=1))
    service.setup()
    return service, journal


def test_a_mark_journaled_while_the_report_is_written_is_reported(store, tmp_path):
    service, journal = _ended_class_with_a_journaled_mark(store, tmp_path)
    writes = []
    write_files = service._write_files

    def write_while_marked(*args, **kwargs):
        if not writes:  # the teacher's click lands after the reporter read the file, before it is deleted
            append_mark(journal, _mark("1", 1e9 + 2, 3))
        writes.append(args)
        return write_files(*args, **kwargs)

    service._write_files = write_while_marked
    _, js = service.write_report("s1")
    marks = json.loads(js.read_text())["marks"]
    assert sorted((m["student"], m["level_given"]) for m in marks) == [("0", 2), ("1", 3)]
    assert len(writes) == 2, "the report is written again once with the late mark"
    assert not marks_path(journal, "s1").exists()


def test_a_report_without_late_marks_is_written_once(store, tmp_path):
    service, _ = _ended_class_with_a_journaled_mark(store, tmp_path)
    writes = []
    write_files = service._write_files
    service._write_files = lambda *a, **k: writes.append(a) or write_files(*a, **k)
    _, js = service.write_report("s1")
    assert [m["student"] for m in json.loads(js.read_text())["marks"]] == ["0"]
    assert len(writes) == 1
