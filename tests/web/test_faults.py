"""The web service killed mid-class under `engagement run`: the launcher restarts it, the
restarted page shows the same class again (from Redis and the live link), and the pipeline
and its report are unaffected."""

from __future__ import annotations

import json
import shlex
import signal
import sys

import httpx
import psutil

from shared.ops.ports import free_ports
from tests.support.web import Launcher, poll_value
from tools.sample_video import make_sample_video


def _web_pid(launcher_pid: int) -> int | None:
    for child in psutil.Process(launcher_pid).children():
        try:
            if child.cmdline()[-1:] == ["web"]:
                return child.pid
        except psutil.Error:
            continue
    return None


def _live(url: str) -> dict | None:
    try:
        return httpx.get(url + "api/live", timeout=1).json()
    except httpx.HTTPError:
        return None


def test_web_killed_mid_class_comes_back_and_the_report_is_whole(tmp_path):
    video = make_sample_video(tmp_path / "class.avi", seconds=12.0, faces=2)
    (port,) = free_ports(1)
    # --open: the "default browser" here is a command that writes down the address it was given.
    opened = tmp_path / "opened.txt"
    browser = f"{shlex.quote(sys.executable)} -c \"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\" %s"
    run = Launcher(str(video["path"]), tmp_path / "reports", port, "--open", env={"BROWSER": browser})
    try:
        url = run.live_url()
        poll_value(lambda: opened.exists() and opened.read_text() == url, 90, 0.2, "the page opened by --open")
        before = poll_value(lambda: (d := _live(url)) and len(d["students"]) >= 1 and d, 90, 0.2,
                            "students on the page")
        pid = _web_pid(run.proc.pid)
        assert pid is not None
        psutil.Process(pid).send_signal(signal.SIGKILL)
        # Back on the same port with the same session, its students and totals from Redis.
        after = poll_value(lambda: (_web_pid(run.proc.pid) not in (None, pid)) and (d := _live(url))
                         and d["session"] == before["session"] and d, 60, 0.2, "the restarted page")
        assert {s["id"] for s in before["students"]} <= {s["id"] for s in after["students"]}
        assert after["totals"]["frames"] >= before["totals"]["frames"]
        assert run.proc.wait(180) == 0, "\n".join(run.lines[-30:])
    finally:
        run.stop()
    [report_path] = list((tmp_path / "reports").glob("*.json"))
    report = json.loads(report_path.read_text())
    assert report["totals"]["frames"] == int(video["seconds"] * 2 + 0.5)  # every frame capture sampled at 2 FPS
    assert any("web exited with -9; restarting" in line for line in run.lines), run.lines[-20:]
