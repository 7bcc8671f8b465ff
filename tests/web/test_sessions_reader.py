"""services/web/sessions.py reads report files as the typed Report (shared/data/report_doc.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from prometheus_client import REGISTRY

from services.web.sessions import Reports, class_level, prediction_at, summarise
from shared.data.report_doc import report_json, to_dict

OLD = Path(__file__).parents[1] / "shared" / "data" / "reports"


def _reports(tmp_path: Path) -> Reports:
    for name in ("one-stream-named", "two-streams-states"):
        shutil.copy(OLD / f"{name}.json", tmp_path / f"{name}.json")
    (tmp_path / "broken.json").write_text('{"schema": 1, "session": "broken"}')
    (tmp_path / "garbage.json").write_text("{not json")
    return Reports(tmp_path)


def test_a_report_loads_and_a_file_that_is_not_one_does_not(tmp_path):
    reports = _reports(tmp_path)
    one = reports.load("one-stream-named")
    assert one is not None and report_json(one) + "\n" == (OLD / "one-stream-named.json").read_text()
    assert reports.load("broken") is None and reports.load("garbage") is None and reports.load("../x") is None
    assert sorted(s["session"] for s in reports.list()) == ["one", "two"]  # the two readable ones


def test_a_file_that_is_not_a_report_is_said_once_and_counted_once_a_version(tmp_path, caplog):
    def counted() -> float:
        return REGISTRY.get_sample_value("engagement_web_unreadable_reports_total") or 0.0

    reports = _reports(tmp_path)
    before = counted()
    with caplog.at_level("WARNING", logger="web"):
        for _ in range(3):  # the list is read on every page load: one line, not one a load
            reports.list()
            reports.load("broken")
    said = [r.getMessage() for r in caplog.records if "left out: not a report" in r.getMessage()]
    assert counted() - before == 2 and len(said) == 2, said
    assert any("broken.json" in line for line in said) and any("garbage.json" in line for line in said)
    (tmp_path / "broken.json").write_text("[]")  # a new version of the file is said again
    os.utime(tmp_path / "broken.json", (1, 1))
    reports.list()
    assert counted() - before == 3


def test_the_summary_row_says_what_the_file_says(tmp_path):
    doc = json.loads((OLD / "two-streams-states.json").read_text())
    report = _reports(tmp_path).load("two-streams-states")
    assert report is not None
    row = summarise(report)
    assert row == {"session": doc["session"], "class": doc["class"], "started": doc["started"], "ended": doc["ended"],
                   "model": doc["model"]["name"], "frames": doc["totals"]["frames"],
                   "predictions": doc["totals"]["predictions"], "students": len(doc["students"]),
                   "class_level_only": False, "streams": ["cam0", "cam1"]}


def test_class_level_keeps_the_totals_and_drops_every_student(tmp_path):
    report = _reports(tmp_path).load("two-streams-states")
    assert report is not None and report.students and report.marks
    plain = to_dict(class_level(report))
    assert plain["students"] == plain["timeline"] == plain["episodes"] == plain["marks"] == []
    assert plain["class_level_only"] is True and "Ben" not in json.dumps(plain)
    assert [st["totals"] for st in plain["streams"]] == [st["totals"] for st in to_dict(report)["streams"]]
    assert list(plain) == list(to_dict(report))  # same keys, same order
    assert report.students  # the loaded report itself is untouched


def test_the_level_nearest_a_mark_comes_from_the_timeline(tmp_path):
    report = _reports(tmp_path).load("one-stream-named")
    assert report is not None
    first = report.timeline[0]
    assert prediction_at(report, "", first.student, first.t_capture + 0.1, 1.0) == first.level
    assert prediction_at(report, "cam9", first.student, first.t_capture, 1.0) is None
    assert prediction_at(report, "", first.student, first.t_capture - 100, 1.0) is None
