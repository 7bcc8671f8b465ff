"""A capture that CRASHES (SIGKILL: no eos sent), as opposed to ending or giving up.

1. A live camera's capture killed mid-class comes back (the launcher restarts it) and its new
   frames are new data: they must be counted, not taken for the crashed run's frames (same
   (stream, seq)) and dropped as duplicates; and facedetect must count a gap about the frames
   missed while capture was down, not an absurd one.
2. A capture that keeps crashing until it has no restarts left never sends its eos: the
   launcher sends it on its behalf (reason capture_crashed), so the class ends when its other
   streams end, with a report that says why that stream ended, not after REPORT_TIMEOUT.

Real parts: `engagement run` (every service its own process, real ZeroMQ, the real Redis), a
real HTTP MJPEG camera of a real face (tests/support/mjpeg.py), a real video file.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time

import psutil
import pytest

from shared.bus.messages import Message
from tests.reliability.harness import LauncherRun, Tap, report_figures
from tests.support.env import REDIS_URL
from tests.support.metrics import metric_sum, scrape
from tests.support.mjpeg import MjpegServer
from tests.support.waiting import wait_for
from tools.sample_video import make_sample_video

pytestmark = pytest.mark.timeout(150)
FPS = 2.0
STARTUP_ALLOWANCE_S = 5.0  # a capture process's start to its first frame, on a loaded 2-core machine


class SeqTap(Tap):
    """The tap, also keeping (seq, capture time) of every predictions message inference published."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, float]] = []
        super().__init__()

    def on_message(self, msg: Message, arrived: float) -> None:
        if msg.kind == "predictions":  # on the tap's thread, under self.lock
            self.frames.append((msg.header.seq, msg.header.stamps.get("capture", msg.header.t_capture)))
        super().on_message(msg, arrived)

    def captured_after(self, wall: float) -> set[int]:
        with self.lock:
            return {seq for seq, captured in self.frames if captured > wall}

    def captured_before(self, wall: float) -> set[int]:
        with self.lock:
            return {seq for seq, captured in self.frames if captured <= wall}


def capture_pid(stream: str = "", timeout: float = 60.0, not_pid: int = 0) -> int:
    """Pid of the running capture of `stream` (any, when empty) that is not `not_pid`."""
    deadline = time.monotonic() + timeout
    while True:
        for child in psutil.Process().children():
            try:
                if child.cmdline()[-2:] != ["engagement.cli", "capture"] or child.pid == not_pid:
                    continue
                if child.status() == psutil.STATUS_ZOMBIE:
                    continue
                if not stream or child.environ().get("STREAM_ID") == stream:
                    return child.pid
            except psutil.Error:
                continue
        assert time.monotonic() < deadline, f"no running capture of stream {stream!r}"
        time.sleep(0.02)


def test_a_live_capture_killed_mid_class_comes_back_and_its_new_frames_count(tmp_path):
    camera = MjpegServer(per_connection=100_000, fps=8.0)  # a camera that streams until the class ends
    seen: dict[str, float] = {}

    def fault(run: LauncherRun) -> None:
        tap: SeqTap = run.tap  # type: ignore[assignment]  # the run was given a SeqTap
        run.wait_for_predictions(6)
        facedetect = run.metrics_port("facedetect")
        gap_before = metric_sum(scrape(facedetect), "engagement_frames_dropped_total", reason="gap")
        pid = capture_pid()
        killed = seen["killed"] = time.time()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(tap.captured_after(killed)) >= 6, "6 frames of the restarted capture", timeout=120)
        seen["gap"] = metric_sum(scrape(facedetect), "engagement_frames_dropped_total", reason="gap") - gap_before
        with tap.lock:
            seen["down_s"] = min(t for _, t in tap.frames if t > killed) - killed
        os.kill(os.getpid(), signal.SIGTERM)  # the teacher ends the class (the launcher's handler)

    run = LauncherRun(camera.url, tmp_path, REDIS_URL, env={"FPS": f"{FPS:g}"})
    plain, run.tap = run.tap, SeqTap()
    plain.close()
    try:
        assert run.run(fault) == 0
    finally:
        camera.close()
    tap: SeqTap = run.tap  # type: ignore[assignment]  # the run was given a SeqTap
    report, published = run.report(), tap.published()
    before, after = tap.captured_before(seen["killed"]), tap.captured_after(seen["killed"])
    report_figures("live-capture-restart", frames_before_kill=len(before), frames_after_restart=len(after),
                   published_frames=published["frames"], reported_frames=report["totals"]["frames"],
                   capture_down_s=round(seen["down_s"], 2), gap_counted=seen["gap"])
    # The restarted capture's frames have seqs of their own (a file's would replay the old ones) ...
    assert len(after) >= 6 and not before & after, sorted(before & after)[:10]
    # ... so the report holds every frame of both runs, none dropped as a duplicate.
    assert report["totals"]["frames"] == published["frames"] == len(before | after)
    assert report["totals"]["predictions"] == published["predictions"] > 0
    # The gap is about the frames not captured while capture was down, not a jump: the restart's
    # seq counts from the first run's process start, so its start-up (before its first frame)
    # and the restart's margin (2 a restart) are in it too.
    assert 0 <= seen["gap"] <= math.ceil((seen["down_s"] + STARTUP_ALLOWANCE_S) * FPS) + 2


def test_a_capture_that_keeps_crashing_has_its_stream_ended_for_it_and_the_class_ends(tmp_path):
    front = make_sample_video(tmp_path / "front.avi", seconds=12.0, faces=1, fps=10.0)
    camera = MjpegServer(per_connection=100_000, fps=8.0)
    kills: list[float] = []
    said: list[str] = []
    listener = logging.Handler()
    listener.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]  # a log spy
    launcher_log = logging.getLogger("launcher")
    level = launcher_log.level
    launcher_log.setLevel(logging.INFO)
    launcher_log.addHandler(listener)

    def fault(run: LauncherRun) -> None:
        # Killed while starting would fail the start: wait for the launcher to say every service is up.
        wait_for(lambda: any("all services up" in line for line in said), "every service up", timeout=120)
        pid = capture_pid("back")
        for _ in range(2):  # MAX_RESTARTS=1: the second crash leaves it down
            os.kill(pid, signal.SIGKILL)
            kills.append(time.monotonic())
            if len(kills) < 2:
                pid = capture_pid("back", not_pid=pid)

    run = LauncherRun(f"front={front['path']}", tmp_path, REDIS_URL, env={"REALTIME": "1"},
                      extra=["--source", f"back={camera.url}", "--max-restarts", "1", "--report-timeout", "60"])
    started = time.monotonic()
    try:
        code = run.run(fault)
    finally:
        camera.close()
        launcher_log.removeHandler(listener)
        launcher_log.setLevel(level)
    elapsed = time.monotonic() - started
    report = run.report()
    streams = {s["stream"]: s for s in report["streams"]}
    report_figures("capture-crashed-for-good", kills=len(kills), run_seconds=round(elapsed, 1),
                   back_end=streams["back"]["end_reason"], front_end=streams["front"]["end_reason"])
    assert len(kills) == 2
    assert code == 3  # a stream failed (the summary says which)
    assert streams["back"]["end_reason"] == "capture_crashed"
    assert streams["front"]["end_reason"] == "end_of_file"
    assert report["end_reason"] != "interrupted"
    # The class ended with its file (12 s of video in real time), not at the report timeout.
    assert elapsed < 50


def test_a_video_file_s_capture_killed_mid_class_resumes_near_where_it_was(tmp_path):
    """A recorded class played in real time, its capture killed 12 s in: the launcher's restart
    plays on from about 5 s before where it was (the state in the run's folder), not from the
    start (a crash at minute 30 replayed 30 minutes); every frame is in the report once, and
    facedetect skips the few it had taken already instead of following a face back in time."""
    video = make_sample_video(tmp_path / "class.avi", seconds=24.0, faces=1, fps=10.0)
    seen: dict[str, float] = {}

    def fault(run: LauncherRun) -> None:
        tap: SeqTap = run.tap  # type: ignore[assignment]  # the run was given a SeqTap
        wait_for(lambda: any(seq >= 24 for seq, _ in tap.frames), "12 s of the video predicted", timeout=120)
        seen["repeated_before"] = metric_sum(scrape(run.metrics_port("facedetect")), "engagement_frames_repeated_total")
        killed = seen["killed"] = time.time()
        os.kill(capture_pid(), signal.SIGKILL)
        wait_for(lambda: len(tap.captured_after(killed)) >= 4, "frames of the restarted capture", timeout=60)
        seen["repeated"] = metric_sum(scrape(run.metrics_port("facedetect")), "engagement_frames_repeated_total")

    run = LauncherRun(video["path"], tmp_path, REDIS_URL, env={"REALTIME": "1", "FPS": f"{FPS:g}"})
    plain, run.tap = run.tap, SeqTap()
    plain.close()
    started = time.monotonic()
    assert run.run(fault) == 0
    elapsed = time.monotonic() - started
    tap: SeqTap = run.tap  # type: ignore[assignment]  # the run was given a SeqTap
    report, published = run.report(), tap.published()
    after = tap.captured_after(seen["killed"])
    report_figures("file-capture-restart", run_seconds=round(elapsed, 1), first_seq_after_restart=min(after),
                   frames_repeated=seen["repeated"] - seen["repeated_before"],
                   reported_frames=report["totals"]["frames"])
    # Resumed near where it was: its first new frame is past the start, and the class took about its
    # video's length plus the restart, not 12 s more for a replay from the start.
    assert min(after) >= 24 - 2 * 5 * FPS, sorted(after)[:5]
    assert report["totals"]["frames"] == published["frames"] == 48  # every frame of the video, once
    assert report["totals"]["predictions"] == published["predictions"] > 0
    assert report["streams"][0]["end_reason"] == "end_of_file"
