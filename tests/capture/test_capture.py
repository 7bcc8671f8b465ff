"""Capture on real video files decoded by OpenCV, over real ZeroMQ sockets.

The file-based tests run capture as a real OS process (`python -m engagement.cli capture`);
the ones that read in-process counters run the service on a thread.
"""

from __future__ import annotations

import math
import os
import re
import signal
import time
from collections.abc import Callable

import cv2
import numpy as np
import pytest
import zmq

from services.capture.service import FRAMES_CORRUPT, SOURCE_RECONNECTS, SOURCE_UP, CaptureService
from shared.bus import metrics
from tests.harness import Peer, Running
from tests.support.capture import played, start_capture
from tests.support.links import link
from tests.support.metrics import counter
from tests.support.mjpeg import MjpegServer
from tools.sample_video import make_sample_video

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("capture") / "sample.avi"
    return make_sample_video(path, seconds=3.0, faces=1, fps=30.0)


def expected_samples(info: dict, fps: float) -> list[float]:
    """Media times capture must keep: the first frame at or after each 1/fps instant."""
    times, next_t = [], 0.0
    for i in range(info["frames"]):
        t = i / info["fps"]
        if t + 1e-6 >= next_t:
            times.append(t)
            while next_t <= t + 1e-6:
                next_t += 1 / fps
    return times


def test_file_at_fps_2_gives_two_frames_per_second_of_video_then_eos(video):
    proc, consumer = start_capture(video["path"], "--fps", "2", "--width", "320", "--height", "240")
    try:
        got = consumer.recv_until_eos()
        assert proc.wait(20) == 0, proc.stderr.read()
    finally:
        consumer.close()
    frames, eos = got[:-1], got[-1]
    want = expected_samples(video, 2.0)
    assert len(want) == math.ceil(video["seconds"] * 2)  # the file's duration, sampled at 2 FPS
    assert [round(m.header.t_media, 3) for m in frames] == [round(t, 3) for t in want]
    assert [m.header.seq for m in frames] == list(range(len(want)))
    assert all(m.header.width == 320 and m.header.height == 240 and len(m.payload) == 320 * 240 * 3 for m in frames)
    assert {m.header.session for m in got} == {"test-session"}
    assert all("capture" in m.header.stamps and m.header.t_capture > 0 for m in frames)
    assert eos.kind == "eos" and eos.header.reason == "end_of_file" and eos.header.seq == len(want)


def test_jpeg_encoding_sends_decodable_jpeg(video):
    proc, consumer = start_capture(video["path"], "--fps", "1", "--frame-encoding", "jpeg")
    try:
        got = consumer.recv_until_eos()
        assert proc.wait(20) == 0
    finally:
        consumer.close()
    frames = got[:-1]
    assert len(frames) == len(expected_samples(video, 1.0))
    image = cv2.imdecode(np.frombuffer(frames[0].payload, np.uint8), cv2.IMREAD_COLOR)
    assert frames[0].header.encoding == "jpeg" and image.shape == (480, 640, 3)


def test_unreadable_file_gives_a_clear_error_eos_source_failed_and_nonzero_exit(tmp_path):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(os.urandom(20000))
    proc, consumer = start_capture(str(bad))
    try:
        got = consumer.recv_until_eos()
        code = proc.wait(20)
    finally:
        consumer.close()
    stderr = proc.stderr.read()
    assert [m.kind for m in got] == ["eos"] and got[0].header.reason == "source_failed"
    assert code != 0
    assert "source failed" in stderr and str(bad) in stderr
    assert "Traceback" not in stderr


def test_sigterm_mid_file_sends_eos_stopped_last(video):
    proc, consumer = start_capture(video["path"], "--fps", "2", "--realtime", "1")
    try:
        first = consumer.recv(20)
        assert first.kind == "frame"
        proc.send_signal(signal.SIGTERM)
        rest = consumer.recv_until_eos()
        assert proc.wait(20) == 0
    finally:
        consumer.close()
    assert rest[-1].header.reason == "stopped"
    assert all(m.kind == "frame" for m in rest[:-1])
    assert len(rest) - 1 < len(expected_samples(video, 2.0)) - 1  # stopped before the end


def _leave_nothing_running(proc) -> None:
    """A test that failed midway must not leave its capture behind (blocked on an eos nobody takes)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_a_capture_whose_launcher_died_stops_without_ending_the_class(video):
    # PARENT_PID names a process that is not this capture's parent: the parent watch takes the
    # launcher for gone within a second, as after a SIGKILL. The class must stay open (no eos):
    # an eos "stopped" would end it as a user's stop wherever it beat the other services' own stop.
    proc, consumer = start_capture(video["path"], "--fps", "2", "--realtime", "1",
                                   env={"PARENT_PID": str(os.getpid() + 1_000_000)})
    try:
        assert consumer.recv(20).kind == "frame"
        assert proc.wait(20) == 0
        rest = []
        while consumer.socket.poll(500):
            rest.append(consumer.recv())
    finally:
        consumer.close()
        _leave_nothing_running(proc)
    _, err = proc.communicate()
    assert [m.kind for m in rest if m.kind != "frame"] == [], "a capture whose launcher died sent an eos"
    assert len(rest) + 1 < len(expected_samples(video, 2.0))  # it stopped before the file's end
    assert "launcher gone: the class is left open" in err


@pytest.mark.parametrize("wave_delay", ["", "3"], ids=["every capture up", "its wave 3 s later"])
def test_a_capture_of_a_class_plays_only_once_the_class_and_its_wave_have_started(video, tmp_path, wave_delay):
    """The launcher makes the file once every capture of the class is up; a capture of a later wave
    (a large class, services/launcher/plan.py) starts CLASS_START_DELAY seconds after that."""
    gate = tmp_path / "captures-up"
    env = {"CAPTURES_UP_FILE": str(gate)}
    if wave_delay:
        gate.touch()
        env["CLASS_START_DELAY"] = wave_delay
    proc, consumer = start_capture(video["path"], "--fps", "2", "--realtime", "1", env=env)
    try:
        assert not consumer.socket.poll(2000), "a frame played before the class (and its wave) started"
        gate.touch()
        got = consumer.recv_until_eos()
        assert proc.wait(20) == 0
    finally:
        consumer.close()
        _leave_nothing_running(proc)
    assert [round(m.header.t_media, 3) for m in got[:-1]] == [round(t, 3) for t in expected_samples(video, 2.0)]
    assert got[-1].header.reason == "end_of_file"


def test_a_file_paced_in_real_time_waits_for_its_consumer_and_loses_no_frame(video):
    # Paced frames are droppable: played before facedetect connects, the class's start would be lost.
    proc, consumer = start_capture(video["path"], "--fps", "2", "--realtime", "1", consumer_after=4.0)
    try:
        got = consumer.recv_until_eos()
        assert proc.wait(20) == 0, proc.stderr.read()
    finally:
        consumer.close()
    assert got[-1].header.reason == "end_of_file"
    assert [m.header.seq for m in got[:-1]] == list(range(len(expected_samples(video, 2.0))))
    assert "waiting up to 120 s for facedetect" in proc.stderr.read()


def test_a_paced_files_frames_are_stamped_at_their_due_times_not_when_the_process_woke(video):
    # A camera takes its frame at its time whether or not capture runs then: stamped on waking, a capture
    # the box ran late hid that delay from every capture -> prediction figure.
    frames = played(video["path"], "--fps", "2", "--realtime", "1")[:-1]
    assert len(frames) == len(expected_samples(video, 2.0))
    first = frames[0].header
    for m in frames[1:]:
        due = first.t_capture + (m.header.t_media - first.t_media)
        assert abs(m.header.t_capture - due) < 1e-6, (m.header.seq, m.header.t_capture - due)
    # sent once due, never before
    assert all(m.header.stamps["capture"] >= m.header.t_capture for m in frames)


def test_a_restarted_capture_replays_a_file_from_seq_0_and_continues_a_live_sources_seq(video):
    """The launcher's restart of a crashed capture: a file's frames are the same frames again
    (the aggregator drops what it counted), a camera's are new ones (their seqs must be new)."""
    started = time.time() - 10.0  # the stream first started 10 s ago
    restart = {"CAPTURE_RESTART": "1", "STREAM_STARTED_AT": repr(started)}
    proc, consumer = start_capture(video["path"], "--fps", "2", env=restart)
    try:
        replayed = [m.header.seq for m in consumer.recv_until_eos()]
        assert proc.wait(20) == 0
    finally:
        consumer.close()
    assert replayed == list(range(len(replayed)))
    camera = MjpegServer(per_connection=100_000, fps=8.0)
    proc, consumer = start_capture(camera.url, "--fps", "2", env=restart)
    try:
        seqs = [consumer.recv(20).header.seq for _ in range(3)]
        waited = time.time() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        consumer.close()
        camera.close()
    # Past every seq 10 s of frames at 2 FPS can have used (20, plus the restart's margin),
    # and no further than the time since (the gap facedetect counts is the frames missed).
    assert 22 <= seqs[0] <= math.ceil(waited * 2) + 2, (seqs, waited)
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]


def corrupt_copy(src: str, dst: str, frames: tuple[int, ...]) -> None:
    """Wreck the JPEG start of the given frames of an MJPG .avi (the file stays playable)."""
    data = bytearray(open(src, "rb").read())
    starts = [m.start() for m in re.finditer(b"\xff\xd8\xff", data)]
    for k in frames:
        data[starts[k]:starts[k] + 600] = bytes(600)
    open(dst, "wb").write(data)


def test_corrupt_frames_mid_file_are_counted_and_skipped(video, tmp_path):
    damaged = str(tmp_path / "damaged.avi")
    corrupt_copy(video["path"], damaged, (10, 40))
    frames_out, _, endpoint = link("frames")
    preview_out, _, _ = link("preview")
    before = counter(FRAMES_CORRUPT, "capture")
    consumer = Peer(zmq.PULL, endpoint, bind=False)
    try:
        with Running(CaptureService, source=damaged, fps=0.0, frames_out=frames_out, preview_out=preview_out):
            got = consumer.recv_until_eos()
    finally:
        consumer.close()
    assert got[-1].header.reason == "end_of_file"
    assert len(got) - 1 == video["frames"] - 2
    assert counter(FRAMES_CORRUPT, "capture") - before == 2


def test_paced_source_with_a_slow_consumer_drops_frames_and_counts_them(video):
    # --realtime paces the file like a live camera: sends are droppable.
    frames_out, _, endpoint = link("frames")
    preview_out, _, _ = link("preview")
    consumer = Peer(zmq.PULL, endpoint, bind=False)
    consumer.socket.setsockopt(zmq.RCVHWM, 1)
    before = counter(metrics.FRAMES_DROPPED, "capture", "queue_full")
    try:
        runner = Running(CaptureService, source=video["path"], fps=30.0, realtime=1, hwm=1,
                         frames_out=frames_out, preview_out=preview_out)
        with runner as service:
            deadline = time.monotonic() + 30
            while service.seq < video["frames"] and time.monotonic() < deadline:
                time.sleep(0.05)  # nobody reads while the whole file plays
            got = consumer.recv_until_eos()
    finally:
        consumer.close()
    dropped = counter(metrics.FRAMES_DROPPED, "capture", "queue_full") - before
    frames = got[:-1]
    assert dropped > 0
    assert len(frames) + dropped == service.seq == video["frames"]
    assert got[-1].header.reason == "end_of_file"
    seqs = [m.header.seq for m in frames]
    assert seqs == sorted(seqs) and seqs[-1] < service.seq  # gaps are visible downstream


def _stopped_when(consumer: Peer, until: Callable[[], bool], timeout: float,
                  **settings) -> tuple[list, CaptureService]:
    """A capture with `settings` until `until()` holds (or `timeout` s pass), then asked to stop: all
    that `consumer` got, up to the eos, and the service."""
    runner = Running(CaptureService, **settings)
    with runner as service:
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            time.sleep(0.05)
        service.request_stop()
        got = consumer.recv_until_eos()
        runner.join()
    return got, service


def dead_url() -> str:
    # Nothing listens on a freshly freed port: every open fails.
    return f"http://127.0.0.1:{link('frames')[2].rsplit(':', 1)[1]}/stream.mjpg"


@pytest.mark.parametrize("source", ["url", "99"])  # a stream, and a webcam index this machine lacks
def test_camera_that_never_opens_is_retried_with_backoff_then_given_up(source):
    frames_out, _, endpoint = link("frames")
    preview_out, _, _ = link("preview")
    consumer = Peer(zmq.PULL, endpoint, bind=False)
    before = counter(SOURCE_RECONNECTS, "capture")
    try:
        runner = Running(CaptureService, source=dead_url() if source == "url" else source,
                         retry_limit=3, retry_max_seconds=0.2,
                         frames_out=frames_out, preview_out=preview_out)
        with runner as service:
            got = consumer.recv_until_eos()
            runner.join()
    finally:
        consumer.close()
    assert [m.kind for m in got] == ["eos"] and got[0].header.reason == "source_failed"
    assert counter(SOURCE_RECONNECTS, "capture") - before == 2  # attempts 2 and 3 were retries
    assert service.exit_code != 0
    assert counter(SOURCE_UP, "capture") == 0


def test_camera_retries_until_stopped_when_there_is_no_retry_limit():
    frames_out, _, endpoint = link("frames")
    preview_out, _, _ = link("preview")
    consumer = Peer(zmq.PULL, endpoint, bind=False)
    before = counter(SOURCE_RECONNECTS, "capture")
    try:
        got, _ = _stopped_when(consumer, lambda: counter(SOURCE_RECONNECTS, "capture") - before >= 3, 10,
                               source=dead_url(), retry_limit=0, retry_max_seconds=0.1, frames_out=frames_out,
                               preview_out=preview_out)
    finally:
        consumer.close()
    assert counter(SOURCE_RECONNECTS, "capture") - before >= 3
    assert got[-1].header.reason == "stopped"


def test_live_stream_that_drops_out_is_reconnected_and_a_slow_consumer_loses_counted_frames():
    camera = MjpegServer(per_connection=15, fps=30.0)
    frames_out, _, endpoint = link("frames")
    preview_out, _, _ = link("preview")
    consumer = Peer(zmq.PULL, endpoint, bind=False)
    consumer.socket.setsockopt(zmq.RCVHWM, 1)
    reconnects = counter(SOURCE_RECONNECTS, "capture")
    dropped = counter(metrics.FRAMES_DROPPED, "capture", "queue_full")
    try:
        # Nobody reads meanwhile.
        got, service = _stopped_when(consumer, lambda: counter(SOURCE_RECONNECTS, "capture") - reconnects >= 2, 20,
                                     source=camera.url, fps=15.0, hwm=1, retry_max_seconds=0.1,
                                     frames_out=frames_out, preview_out=preview_out)
    finally:
        consumer.close()
        camera.close()
    frames = got[:-1]
    assert camera.connections >= 3
    assert counter(SOURCE_RECONNECTS, "capture") - reconnects >= 2
    assert got[-1].header.reason == "stopped"
    assert frames and all(m.header.t_media is None and m.header.source == camera.url for m in frames)
    lost = counter(metrics.FRAMES_DROPPED, "capture", "queue_full") - dropped
    assert lost > 0 and len(frames) + lost == service.seq


def test_a_stalled_stream_counts_as_a_drop_out_and_is_reopened(monkeypatch):
    import services.capture.sources as sources

    monkeypatch.setattr(sources, "STREAM_TIMEOUT_MS", 500)
    camera = MjpegServer(per_connection=3, fps=30.0, hold=30.0)
    frames_out, _, endpoint = link("frames")
    preview_out, _, _ = link("preview")
    consumer = Peer(zmq.PULL, endpoint, bind=False)
    before = counter(SOURCE_RECONNECTS, "capture")
    try:
        got, _ = _stopped_when(consumer, lambda: camera.connections >= 2, 20, source=camera.url, fps=0.0,
                               retry_max_seconds=0.1, frames_out=frames_out, preview_out=preview_out)
    finally:
        consumer.close()
        camera.close()
    assert camera.connections >= 2 and counter(SOURCE_RECONNECTS, "capture") - before >= 1
    assert len(got) > 1 and got[-1].header.reason == "stopped"
