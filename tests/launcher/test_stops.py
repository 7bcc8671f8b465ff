"""Issue 22, item 8: stops are clean. Real signals to a real `engagement run`.

- a stop asked for during start-up starts nothing more (before: capture started anyway and
  captured 13 more frames);
- a second Ctrl-C finishes the stop at once, without a traceback (before: a KeyboardInterrupt
  traceback, exit 130, the run folder and /tmp/engagement-bus-* left behind).
Each run gets a TMPDIR of its own, so "no bus folder left" is checked on this run's alone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.runs import processes_from, wait_gone
from tools.sample_video import make_sample_video


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> dict:
    return make_sample_video(tmp_path_factory.mktemp("long") / "long.avi", seconds=20.0, faces=1)


def _start(cwd: Path, tmpdir: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REPORT_DIR", "FPS", "RECORD")}
    env["TMPDIR"] = str(tmpdir)
    return subprocess.Popen([sys.executable, "-m", "engagement.cli", "run", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _children(cwd: Path, proc: subprocess.Popen) -> list[str]:
    names = []
    for p in processes_from(cwd):
        try:
            cmd = p.cmdline()
        except Exception:  # noqa: BLE001 - gone meanwhile
            continue
        if p.pid != proc.pid and "engagement.cli" in cmd:
            names.append(cmd[cmd.index("engagement.cli") + 1])
    return names


def _wait_for(cwd: Path, proc: subprocess.Popen, service: str, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if service in _children(cwd, proc):
            return
        time.sleep(0.05)
    raise AssertionError(f"{service} never started")


def _assert_nothing_left(cwd: Path, tmpdir: Path) -> None:
    assert wait_gone(cwd) == []
    assert not (cwd / ".engagement").exists(), list((cwd / ".engagement").rglob("*"))
    assert list(tmpdir.glob("engagement-bus-*")) == []


def test_a_stop_during_start_up_starts_nothing_more(classroom: Path, tmp_path_factory) -> None:
    tmpdir = tmp_path_factory.mktemp("tmp")
    proc = _start(classroom, tmpdir, "--source", "class.avi")
    _wait_for(classroom, proc, "web")  # the first service is starting: the run is in its start-up
    proc.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    seen: set[str] = set()
    while proc.poll() is None and time.monotonic() - stopped < 60:
        seen |= set(_children(classroom, proc))
        time.sleep(0.05)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - stopped
    assert "capture" not in seen, (seen, err[-2000:])
    assert proc.returncode == 0, err[-3000:]
    assert "stopped before the class started" in out, out
    assert "Traceback" not in err, err[-3000:]
    assert took < 15, f"the stop took {took:.1f} s"
    assert not (classroom / "reports").exists()  # no class, no report
    print(f"\nstop during start-up: exit 0 in {took:.1f} s, started after the stop: {sorted(seen)}")
    _assert_nothing_left(classroom, tmpdir)


def test_a_second_ctrl_c_finishes_the_stop_without_a_traceback(classroom: Path, long_video: dict,
                                                               tmp_path_factory) -> None:
    tmpdir = tmp_path_factory.mktemp("tmp")
    os.link(long_video["path"], classroom / "long.avi")
    proc = _start(classroom, tmpdir, "--source", "long.avi", "--realtime")
    _wait_for(classroom, proc, "capture")
    time.sleep(3.0)  # a few frames at 2 FPS
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    stopped = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - stopped
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert "second stop request" in err
    assert proc.returncode == 0, err[-3000:]
    assert took < 15, f"the stop took {took:.1f} s after the second Ctrl-C"
    # What was counted is reported (drained, or written from Redis after the services were killed).
    found = re.findall(r"^report: (\S+\.json)$", out, re.M)
    assert found, out
    report = json.loads((classroom / found[-1]).read_text())
    print(f"\nsecond Ctrl-C: exit 0 {took:.1f} s after it, report {report['end_reason']} with "
          f"{report['totals']['frames']} frames")
    assert report["end_reason"] in ("stopped", "interrupted") and report["totals"]["frames"] > 0
    _assert_nothing_left(classroom, tmpdir)
