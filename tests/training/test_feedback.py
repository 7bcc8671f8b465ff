"""`engagement-train feedback`: the teacher's marks from the real Redis to a CSV of labelled data."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

from shared.data.marks import MarkStore, validate_mark
from training.cli import main

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REPO = Path(__file__).resolve().parents[2]


def _add(store: MarkStore, session: str, student: int, t: float, given: int, predicted: int | None,
         signals: dict) -> None:
    store.add(validate_mark({"session": session, "student": student, "t": t, "level_given": given,
                             "level_predicted": predicted, "signals": signals}))


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_every_mark_becomes_a_row_with_each_signal_a_column(marks, tmp_path, capsys):
    _add(marks, "s1", 1, 1_700_000_000.25, 0, 1, {"yaw": -21.5, "pitch": 12.0, "eye_openness": 0.31})
    _add(marks, "s1", 2, 1_700_000_003.0, 3, 3, {"yaw": 61.0, "mesh_confidence": 0.9})
    _add(marks, "s2", 1, 1_700_100_000.0, 2, None, {})
    out = tmp_path / "marks.csv"
    assert main(["feedback", "--out", str(out), "--redis-url", REDIS_URL, "--redis-prefix", marks.prefix]) == 0
    rows = _read(out)
    assert list(rows[0]) == ["id", "session", "stream", "student", "t", "level_given", "level_predicted", "source",
                             "created_at", "eye_openness", "mesh_confidence", "pitch", "yaw"]
    assert [(r["session"], r["student"], r["level_given"], r["level_predicted"]) for r in rows] == \
        [("s1", "1", "0", "1"), ("s1", "2", "3", "3"), ("s2", "1", "2", "")]
    assert float(rows[0]["t"]) == 1_700_000_000.25 and float(rows[0]["yaw"]) == -21.5
    assert rows[1]["pitch"] == "" and float(rows[1]["mesh_confidence"]) == 0.9
    assert "3 marks of 2 sessions written to" in capsys.readouterr().out


def test_one_sessions_marks_and_an_unknown_session(marks, tmp_path, capsys):
    _add(marks, "s1", 1, 1_700_000_000.0, 0, 0, {"yaw": 1.0})
    _add(marks, "s2", 4, 1_700_000_001.0, 1, 0, {"yaw": 2.0})
    out = tmp_path / "one.csv"
    args = ["feedback", "--out", str(out), "--redis-url", REDIS_URL, "--redis-prefix", marks.prefix]
    assert main([*args, "--session", "s2"]) == 0
    assert [r["student"] for r in _read(out)] == ["4"]
    assert main([*args, "--session", "typo"]) == 0
    assert _read(out) == []  # header only
    assert "sessions with marks: s1, s2" in capsys.readouterr().out


def test_unreachable_redis_is_one_line_exit_2_and_keeps_the_old_file(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    out = tmp_path / "marks.csv"
    out.write_text("old\n")
    proc = subprocess.run([sys.executable, "-m", "training.cli", "feedback", "--out", str(out),
                           "--redis-url", f"redis://127.0.0.1:{port}/0"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "cannot read the marks from Redis" in proc.stderr
    assert out.read_text() == "old\n" and not list(tmp_path.glob(".marks.csv.*"))


def test_marks_of_two_streams_carry_their_stream(marks, tmp_path):
    """Student 1 of cam0 and student 1 of cam1 are two students: the rows say which."""
    for stream, given in (("cam0", 0), ("cam1", 3)):
        marks.add(validate_mark({"session": "s3", "stream": stream, "student": 1, "t": 1_700_000_000.0,
                                 "level_given": given, "level_predicted": given, "signals": {"yaw": 1.0}}))
    _add(marks, "s3", 2, 1_700_000_001.0, 1, 1, {})  # a one-stream mark: no stream
    out = tmp_path / "streams.csv"
    assert main(["feedback", "--out", str(out), "--redis-url", REDIS_URL, "--redis-prefix", marks.prefix]) == 0
    assert [(r["stream"], r["student"], r["level_given"]) for r in _read(out)] == \
        [("cam0", "1", "0"), ("cam1", "1", "3"), ("", "2", "1")]


def _report_with(session: str, *marks_) -> dict:
    from shared.data.marks import report_section
    from tests.support.reports import report_dict

    return report_dict(session=session, **report_section(list(marks_)))


def test_marks_of_report_folders_join_those_of_redis_once(marks, tmp_path, capsys):
    """Issue 21: a class run with a private Redis keeps its marks only in its report; the export
    reads the report folders as well as Redis, and a mark in both is one row."""
    import json

    both = validate_mark({"session": "s1", "student": 1, "t": 1_700_000_000.5, "level_given": 2,
                          "level_predicted": 0, "signals": {"yaw": 40.0}, "created_at": 1_700_000_001.0})
    marks.add(both)
    private = validate_mark({"session": "s9", "student": 3, "t": 1_700_500_000.0, "level_given": 1,
                             "level_predicted": 1, "signals": {"pitch": 9.0}, "created_at": 1_700_500_001.0})
    private.id = "1"  # what its private Redis called it
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "s1.json").write_text(json.dumps(_report_with("s1", both)))
    (folder / "s9.json").write_text(json.dumps(_report_with("s9", private)))
    (folder / "notes.json").write_text("not a report")
    out = tmp_path / "marks.csv"
    args = ["feedback", "--out", str(out), "--redis-url", REDIS_URL, "--redis-prefix", marks.prefix,
            "--reports", str(folder)]
    assert main(args) == 0
    assert [(r["session"], r["student"], r["level_given"], r["yaw"], r["pitch"]) for r in _read(out)] == \
        [("s1", "1", "2", "40.0", ""), ("s9", "3", "1", "", "9.0")]
    assert "2 marks of 2 sessions" in capsys.readouterr().out
    assert main([*args, "--session", "s9"]) == 0 and [r["session"] for r in _read(out)] == ["s9"]
    # Redis unreachable: the reports' marks are still exported, and the log says what is missing.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["feedback", "--out", str(out), "--redis-url", f"redis://127.0.0.1:{port}/0",
                 "--reports", str(folder)]) == 0
    assert len(_read(out)) == 2
    # A report folder that does not exist: exit 2, the old file kept.
    assert main(["feedback", "--out", str(out), "--redis-url", REDIS_URL, "--reports", str(tmp_path / "nope")]) == 2
    assert len(_read(out)) == 2
