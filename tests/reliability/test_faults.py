"""Faults 2-5 injected into the real running pipeline (`engagement run`, real Redis, sockets).

2. Redis is SIGKILLed mid-session and restarted (append-only file on): nothing lost; while
   it is down the aggregator buffers (backlog gauge) and catches up.
3. Inference made 10x slower than the frame rate: queues stay bounded (drops counted at
   capture), memory of every process stays flat, latency of what gets through is bounded.
4. The camera (a real MJPEG-over-HTTP server) drops out and comes back, and the recording
   disk is "full": each is logged and counted, the pipeline goes on and reports.
5. The session ends (SIGTERM to the launcher) while messages are in flight: the report still
   accounts for every published prediction.
Every run compares the report with the predictions tapped off the real predictions link.
"""

from __future__ import annotations

import os
import signal
import statistics
import time

import psutil
import pytest

from tests.aggregator.harness import PrivateRedis
from tests.reliability.harness import LauncherRun, report_figures, rss, service_pid
from tests.support.env import REDIS_URL
from tests.support.metrics import metric_sum, scrape
from tests.support.mjpeg import MjpegServer
from tests.support.waiting import wait_for

SERVICES = ["capture", "facedetect", "inference", "aggregator", "reporter"]  # the baseline's class: no sequencer


def _assert_report_matches_tap(run: LauncherRun) -> dict:
    report, published = run.report(), run.tap.published()
    totals = report["totals"]
    assert published["predictions"] > 0
    assert totals["frames"] == published["frames"]
    assert totals["predictions"] == published["predictions"]
    assert {int(k): v for k, v in totals["levels"].items() if v} == published["levels"]
    return report


# --- 2. Redis restarts ------------------------------------------------------------------------

def test_redis_killed_and_restarted_mid_session_loses_no_total(long_video, tmp_path):
    server = PrivateRedis(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    seen: dict[str, float] = {}

    def fault(run: LauncherRun) -> None:
        run.wait_for_predictions(6)
        server.proc.send_signal(signal.SIGKILL)  # no shutdown save: only the append-only file
        server.proc.wait(10)
        port = run.metrics_port("aggregator")
        down_at = time.monotonic()
        wait_for(lambda: metric_sum(scrape(port), "engagement_aggregator_backlog") >= 3, "a backlog", timeout=60)
        while time.monotonic() - down_at < 4.0:
            time.sleep(0.1)
        samples = scrape(port)
        seen["backlog_while_down"] = metric_sum(samples, "engagement_aggregator_backlog")
        seen["redis_errors"] = metric_sum(samples, "engagement_redis_errors_total")
        seen["down_seconds"] = round(time.monotonic() - down_at, 1)
        server.start()  # same port, same directory: Redis replays its append-only file
        wait_for(lambda: metric_sum(scrape(port), "engagement_aggregator_backlog") == 0, "the catch-up", timeout=60)

    try:
        run = LauncherRun(long_video["path"], tmp_path / "reports", server.url,
                          env={"REALTIME": "1"}, extra=["--report-timeout", "120"])
        assert run.run(fault) == 0
    finally:
        server.stop()
    report = _assert_report_matches_tap(run)
    report_figures("redis-restart", faults_injected=1, faults_survived=1, **seen,
                   published_predictions=run.tap.published()["predictions"],
                   reported_predictions=report["totals"]["predictions"],
                   predictions_lost=run.tap.published()["predictions"] - report["totals"]["predictions"])
    assert seen["backlog_while_down"] > 0 and seen["redis_errors"] > 0


# --- 3. Slow consumer -------------------------------------------------------------------------

def _slow_consumer(long_video, tmp_path, hwm: int, seconds: float, title: str) -> None:
    fps = 10.0
    slowdown = 10 / fps  # each batch takes ten frame periods: inference is 10x too slow
    memory: dict[str, list[int]] = {name: [] for name in SERVICES}
    drops: dict[str, float] = {}

    def fault(run: LauncherRun) -> None:
        run.wait_for_predictions(2)
        pids = {name: service_pid(name) for name in SERVICES}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for name, pid in pids.items():
                try:
                    memory[name].append(rss(pid))
                except psutil.Error:
                    pass
            time.sleep(1.0)
        capture = scrape(run.metrics_port("capture"))
        drops["capture_dropped"] = metric_sum(capture, "engagement_frames_dropped_total", service="capture")
        drops["capture_sent"] = metric_sum(capture, "engagement_frames_captured_total")
        os.kill(os.getpid(), signal.SIGTERM)  # the launcher's handler: end the session now

    run = LauncherRun(long_video["path"], tmp_path, REDIS_URL,
                      env={"REALTIME": "1", "FPS": str(fps), "SLOWDOWN": str(slowdown), "HWM": str(hwm)})
    assert run.run(fault) == 0
    _assert_report_matches_tap(run)
    latencies = list(run.tap.latencies)
    half = len(latencies) // 2
    third = len(latencies) // 3
    growth = {name: round((max(v[len(v) // 2:]) - v[len(v) // 2]) / 2**20, 1) for name, v in memory.items() if v}
    report_figures(title, inference_slowdown_s=slowdown, fps=fps, hwm=hwm, **drops,
                   predictions=len(latencies), latency_median_s=round(statistics.median(latencies), 2),
                   latency_max_first_half_s=round(max(latencies[:half]), 2),
                   latency_max_second_half_s=round(max(latencies[half:]), 2),
                   rss_growth_mb_second_half=growth, rss_mb={n: round(v[-1] / 2**20) for n, v in memory.items() if v})
    # Drops are counted where they happen (a paced source sends droppably).
    assert drops["capture_dropped"] > 0
    # Bounded queues: latency levels off at a few queue depths; with an unbounded queue
    # each prediction would be older than the one before, all the way to the end (about
    # 0.9 s a prediction here: 12 s or more from one third of the run to the next). The
    # first third fills the queues; the last third's median stays within three batches of
    # the middle third's. Medians, because inference takes what is queued as one batch:
    # when it takes several, the frames that refill those slots were captured 0.1 s apart
    # and wait 1 s apart, so a single frame's latency jitters by a few batches either way.
    middle, last = latencies[third:2 * third], latencies[2 * third:]
    assert statistics.median(last) < statistics.median(middle) + 3 * slowdown, (middle, last)
    assert max(last) < max(middle) + 5 * slowdown, (middle, last)
    # Memory flat: no process grows over the second half of the slow run.
    assert all(g < 30 for g in growth.values()), growth


def test_slow_inference_keeps_queues_bounded_drops_counted_memory_flat(long_video, tmp_path):
    _slow_consumer(long_video, tmp_path, hwm=1, seconds=20, title="slow-consumer")


@pytest.mark.slow
def test_slow_inference_with_default_queues(very_long_video, tmp_path):
    _slow_consumer(very_long_video, tmp_path, hwm=4, seconds=60, title="slow-consumer-default-hwm")


# --- 4. Camera drop-out, end of file, full disk -------------------------------------------------

def test_camera_drops_out_and_returns_disk_full_recording_stops_pipeline_goes_on(tmp_path, capfd):
    camera = MjpegServer(per_connection=45, fps=15.0)  # hangs up every 3 s
    seen: dict[str, float] = {}

    def fault(run: LauncherRun) -> None:
        run.wait_for_predictions(2)
        port = run.metrics_port("capture")
        wait_for(lambda: metric_sum(scrape(port), "engagement_source_reconnects_total") >= 2, "reconnects", timeout=60)
        after = run.tap.count()
        run.wait_for_predictions(after + 2)  # frames flow again after the camera came back
        seen["reconnects"] = metric_sum(scrape(port), "engagement_source_reconnects_total")
        seen["disk_full"] = metric_sum(scrape(run.metrics_port("reporter")), "engagement_recording_errors_total",
                                       reason="disk_full")
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        run = LauncherRun(camera.url, tmp_path / "reports", REDIS_URL,
                          env={"RETRY_MAX_SECONDS": "0.5", "RECORD": "1", "RECORD_PATH": str(tmp_path / "rec"),
                               # More free space than any disk has: the disk is "full".
                               "RECORD_MIN_FREE_BYTES": str(10**18)})
        assert run.run(fault) == 0
    finally:
        camera.close()
    logs = capfd.readouterr().err
    report = _assert_report_matches_tap(run)
    report_figures("camera-dropout-disk-full", faults_injected=2, faults_survived=2,
                   camera_connections=camera.connections,
                   **seen, frames=report["totals"]["frames"])
    assert seen["reconnects"] >= 2 and camera.connections >= 3
    assert seen["disk_full"] == 1
    assert report["end_reason"] == "stopped"
    assert "dropped out" in logs and "(disk_full)" in logs
    assert not any((tmp_path / "rec").glob("*.avi")) or all(p.stat().st_size == 0 for p in (tmp_path / "rec").glob("*"))


def test_file_ends_report_says_end_of_file(short_video, tmp_path, capfd):
    run = LauncherRun(short_video["path"], tmp_path, REDIS_URL)
    assert run.run() == 0
    report = _assert_report_matches_tap(run)
    assert report["end_reason"] == "end_of_file"
    assert report["totals"]["frames"] == int(short_video["seconds"] * 2 + 0.5)
    assert "end of stream (end_of_file)" in capfd.readouterr().err


# --- 5. Session ends with messages in flight ------------------------------------------------------

def test_session_ends_with_messages_in_flight_report_counts_every_published_prediction(long_video, tmp_path):
    # A file source without pacing fills every queue (backpressure); slow inference keeps
    # them full, so when the launcher is told to stop, frames sit on every link.
    in_flight: dict[str, float] = {}

    def fault(run: LauncherRun) -> None:
        run.wait_for_predictions(5)
        in_flight["predictions_before_stop"] = run.tap.count()
        os.kill(os.getpid(), signal.SIGTERM)

    run = LauncherRun(long_video["path"], tmp_path, REDIS_URL, env={"SLOWDOWN": "0.2"})
    assert run.run(fault) == 0
    report = _assert_report_matches_tap(run)
    drained = run.tap.count() - in_flight["predictions_before_stop"]
    report_figures("session-end-in-flight", predictions_before_stop=in_flight["predictions_before_stop"],
                   drained_after_stop=drained, reported_frames=report["totals"]["frames"],
                   published_predictions=run.tap.published()["predictions"],
                   predictions_lost=run.tap.published()["predictions"] - report["totals"]["predictions"])
    assert report["end_reason"] == "stopped"
    assert drained > 0  # messages were in flight at the stop, and they still arrived
