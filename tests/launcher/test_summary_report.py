"""services/launcher/summary.py and store_watch.py read the report file as the typed Report."""

from __future__ import annotations

import json
from pathlib import Path

from services.launcher.store_watch import say_where_figures_came_from
from services.launcher.summary import print_summary

OLD = Path(__file__).parents[1] / "shared" / "data" / "reports"


def test_the_summary_says_frames_failed_streams_and_the_recording(capsys):
    print_summary(OLD / "one-stream-named.json", 2.0)
    out = capsys.readouterr().out
    frames = json.loads((OLD / "one-stream-named.json").read_text())["totals"]["frames"]
    assert f"session one: {frames} frames in 2.0 s" in out and "recording: /recordings/one.mp4" in out
    print_summary(OLD / "two-streams-states.json", 1.0, failed_streams=["cam1"], crashed={"cam1"})
    out = capsys.readouterr().out
    assert "stream cam1 failed: its capture crashed (end_of_file)" in out and "recording:" not in out


def test_an_unreadable_report_prints_nothing(tmp_path, capsys):
    for text in ("not json", '{"schema": 1}'):
        (tmp_path / "bad.json").write_text(text)
        print_summary(tmp_path / "bad.json", 1.0)
        say_where_figures_came_from(tmp_path / "bad.json")
    print_summary(tmp_path / "missing.json", 1.0)
    assert capsys.readouterr().out == ""


def test_figures_not_simply_from_redis_are_said(capsys):
    say_where_figures_came_from(OLD / "one-stream-named.json")
    assert capsys.readouterr().out == \
        "figures: written from the aggregator's journal; missing: the teacher's marks\n"
    say_where_figures_came_from(OLD / "mqtt-omitted.json")  # no store section
    assert capsys.readouterr().out == ""
