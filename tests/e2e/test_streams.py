"""Several cameras in one class (issue 15), the whole pipeline as `engagement run` starts it:
two real-face sources give ONE session and ONE report whose per-stream sections each hold
their own students; a camera that dies mid-class ends its own stream only (its end and reason
recorded) while the other goes on, and the class report is still written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import REDIS_URL
from tests.support.mjpeg import MjpegServer
from tests.support.pipeline import sampled_frames
from tests.support.runs import wait_gone
from tools.sample_video import make_sample_video

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def two_rooms(tmp_path_factory) -> dict[str, dict]:
    """Two short class videos of real faces: one student at the front, two at the back."""
    folder = tmp_path_factory.mktemp("rooms")
    return {"front": make_sample_video(folder / "front.avi", seconds=4.0, faces=1),
            "back": make_sample_video(folder / "back.avi", seconds=4.0, faces=2)}


def _run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REPORT_DIR", "FPS", "RECORD")}
    return subprocess.run([sys.executable, "-m", "engagement.cli", "run", *args, "--redis-url", REDIS_URL,
                           "--report-dir", str(cwd / "reports")], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=200)


def _the_report(cwd: Path) -> dict:
    [path] = list((cwd / "reports").glob("*.json"))  # one class, one report
    return json.loads(path.read_text())


def test_two_cameras_give_one_report_with_a_section_per_stream(tmp_path, two_rooms):
    out = _run(tmp_path, "--source", f"front={two_rooms['front']['path']}",
               "--source", f"back@1={two_rooms['back']['path']}")  # the back camera at 1 FPS
    assert out.returncode == 0, out.stderr[-3000:]
    report = _the_report(tmp_path)
    streams = {s["stream"]: s for s in report["streams"]}
    assert set(streams) == {"front", "back"}
    front, back = streams["front"], streams["back"]
    # Each stream at its own FPS, every frame of both in the one session.
    assert front["totals"]["frames"] == sampled_frames(two_rooms["front"], 2.0)
    assert back["totals"]["frames"] == sampled_frames(two_rooms["back"], 1.0)
    assert report["totals"]["frames"] == front["totals"]["frames"] + back["totals"]["frames"]
    # Student ids start at 1 in each stream: the report keeps them apart.
    assert [s["student"] for s in front["students"]] == [1]
    assert sorted(s["student"] for s in back["students"]) == [1, 2]
    assert all(s["predictions"] > 0 for s in front["students"] + back["students"])
    assert {(s["stream"], s["student"]) for s in report["students"]} == {("front", 1), ("back", 1), ("back", 2)}
    assert front["end_reason"] == back["end_reason"] == "end_of_file"
    assert front["source"] == two_rooms["front"]["path"] and back["source"] == two_rooms["back"]["path"]
    assert "Traceback" not in out.stderr
    assert out.stdout.count(".json") == 2  # the one report: the reporter's line and the launcher's
    assert wait_gone(tmp_path) == []


def test_a_camera_that_dies_mid_class_ends_its_stream_and_the_class_goes_on(tmp_path, two_rooms):
    # The back camera: 1 connection for the check, 1 for capture (1 s of frames), then gone.
    camera = MjpegServer(per_connection=4, fps=4.0, max_connections=2)
    try:
        out = _run(tmp_path, "--source", f"front={two_rooms['front']['path']}", "--source", f"back={camera.url}",
                   "--realtime", "--reconnect", "2", env={"RETRY_MAX_SECONDS": "0.5"})
    finally:
        camera.close()
    assert out.returncode == 3, out.stderr[-3000:]  # EXIT_GAVE_UP: a source could not be read
    errors = [line for line in out.stderr.splitlines() if " launcher ERROR " in line]
    assert len(errors) == 1 and "stream back: the source" in errors[0] and "class went on" in errors[0], errors
    assert "stream back failed: its source could not be read (source_failed)" in out.stdout
    report = _the_report(tmp_path)
    streams = {s["stream"]: s for s in report["streams"]}
    back, front = streams["back"], streams["front"]
    assert back["end_reason"] == "source_failed" and back["totals"]["frames"] > 0
    assert front["end_reason"] == "end_of_file"
    # The front camera went on after the back one died, to its last frame.
    assert front["ended"] > back["ended"]
    assert front["totals"]["frames"] == sampled_frames(two_rooms["front"], 2.0)
    assert [s["student"] for s in front["students"]] == [1]
    assert wait_gone(tmp_path) == []
