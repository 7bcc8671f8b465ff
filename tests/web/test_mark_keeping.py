"""A mark journaled just as the class's report appears is said kept by Redis alone.

The web looks for the report before it journals a mark of a class and again after: the reporter
reads the journaled marks once more after writing the report (tests/reporter/test_late_marks.py),
so a mark journaled before the report appeared is reported; one journaled after may not be, and
only Redis is sure to hold it (with Redis away: 503, never a 201 for a mark no one will report)."""

from __future__ import annotations

import time

from services.web.context import WebContext
from services.web.routes.marks import _keep_on_disk
from services.web.sessions import Reports
from shared.data.marks import Mark
from shared.data.marks_journal import read_marks


class ReportWrittenMeanwhile(Reports):
    """No report when the web first looks; the reporter writes it right after."""

    def load(self, session: str):  # noqa: ANN201 (the base's)
        found = super().load(session)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"{session}.json").write_text("{}")
        return found


def _context(tmp_path, reports: Reports) -> WebContext:
    return WebContext(live=None, reports=reports, video=None, events=None, marks=None,  # type: ignore[arg-type]
                      class_level_only=False, journal_dir=str(tmp_path / "journal"))


def _mark() -> Mark:
    return Mark("s1", "1", 1e9, 2, None, {}, time.time(), "live")


def test_a_mark_journaled_as_the_report_appears_is_not_said_kept_on_disk(tmp_path):
    ctx = _context(tmp_path, ReportWrittenMeanwhile(tmp_path / "reports"))
    assert _keep_on_disk(ctx, _mark()) is False
    assert len(read_marks(ctx.journal_dir, "s1")) == 1  # written all the same: the reporter may still read it


def test_a_mark_of_a_class_not_yet_reported_is_kept_on_disk(tmp_path):
    ctx = _context(tmp_path, Reports(tmp_path / "reports"))
    assert _keep_on_disk(ctx, _mark()) is True
    assert len(read_marks(ctx.journal_dir, "s1")) == 1
