"""`engagement bench-streams --quick`: every figure it promises, written (no speed asserts).

Real parts: the launcher runs a class of 2 camera-like streams (a real-face video each)
through every service, paced at 2 FPS and unthrottled.
"""

from __future__ import annotations

import json

from bench import streams


def test_quick_bench_streams_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "streams.json"
    assert streams.main(["--quick", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert {"load_average_at_start", "load_average_at_end", "cpus"} <= set(r["machine"])
    assert [(run["streams"], run["mode"]) for run in r["runs"]] == [(2, "2fps"), (2, "unthrottled")]
    for run in r["runs"]:
        assert run["exit_code"] == 0
        # 3 s per stream: 6 frames at 2 FPS, all 90 unthrottled; each through to the tap on the updates
        # link once, or counted where it was dropped (updates are droppable: a tap slowed by a loaded
        # machine may miss some, queue_full). Exact: "178 through + 4 drops == 180" once failed because
        # the aggregator sent a second update for a predictions message inference resent (late ack).
        expected = (6 if run["mode"] == "2fps" else 90) * run["streams"]
        assert run["updates_repeated"] == 0, run
        assert run["frames_through"] + run["drops_counted"] == expected, run
        assert run["fps"] > 0 and run["capture_to_prediction_ms"]["p99"] is not None
        assert run["faces_per_frame"] > 0 and run["model_calls"] > 0
        assert 1 <= run["streams_per_call"] <= run["streams"]
    printed = capsys.readouterr().out
    assert "| streams | pacing | frames/s (all)" in printed and "load average" in printed
