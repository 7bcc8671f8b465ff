"""`engagement-train feedback`: the teacher's marks from the real Redis to a CSV of labelled data."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

from shared.marks import MarkStore, validate_mark
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
