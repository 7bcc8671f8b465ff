"""`engagement report` reads the report file as the typed Report: CSV and HTML beside it, a bad
file refused in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

from engagement.commands import report_main
from shared.data.report_doc import load_report
from shared.data.report_export import report_csv

OLD = Path(__file__).parent / "data" / "reports"


def test_csv_and_html_are_written_beside_the_report(tmp_path, capsys):
    js = tmp_path / "one.json"
    shutil.copy(OLD / "one-stream-named.json", js)
    assert report_main([str(js), "--csv", "--html"]) == 0
    csv_text = (tmp_path / "one.csv").read_text()
    assert csv_text == report_csv(load_report(js))
    assert len(csv_text.splitlines()) == 1 + len(load_report(js).timeline)
    assert "Ada Lovelace" in (tmp_path / "one.html").read_text()
    assert capsys.readouterr().out.splitlines() == [f"csv: {tmp_path / 'one.csv'}", f"html: {tmp_path / 'one.html'}"]


def test_a_file_that_is_not_a_report_is_refused_in_one_line(tmp_path, capsys):
    for text in ("not json", '{"schema": 1, "session": "x"}'):
        (tmp_path / "bad.json").write_text(text)
        assert report_main([str(tmp_path / "bad.json"), "--csv"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("engagement report:") and "cannot be read as a report" in err
        assert err.count("\n") == 1 and not (tmp_path / "bad.csv").exists()
