"""A capture restarted by a supervisor that cannot say it is a restart (Docker's restart
policy in compose): with CAPTURE_STATE_DIR it finds its stream's state and resumes, keeping
the session and continuing seq past the crashed run's. Real capture processes on a real MJPEG
camera over HTTP, killed with SIGKILL as a crash is."""

from __future__ import annotations

import os
import signal
import time

import pytest

from services.capture.resume import HEARTBEAT_SECONDS
from tests.support.capture import start_capture
from tests.support.mjpeg import MjpegServer


def _frames(source: str, n: int, env: dict[str, str]) -> tuple[list[dict], object, object]:
    """Start a capture with no SESSION_ID, take its first n frames; the process and consumer stay open."""
    proc, consumer = start_capture(source, "--fps", "4", env=env, session=None)
    try:
        frames = [consumer.recv(20) for _ in range(n)]
    except BaseException:
        proc.kill()
        consumer.close()
        raise
    return frames, proc, consumer


def _crash(proc, consumer) -> str:
    proc.send_signal(signal.SIGKILL)
    proc.wait(20)
    consumer.close()
    return proc.stderr.read()


def _stop(proc, consumer) -> list:
    proc.send_signal(signal.SIGTERM)
    rest = consumer.recv_until_eos()
    assert proc.wait(20) == 0, proc.stderr.read()
    consumer.close()
    return rest


def test_a_crashed_capture_restarted_with_the_same_environment_resumes_its_stream(tmp_path):
    state = tmp_path / "state"
    env = {"CAPTURE_STATE_DIR": str(state), "STREAM_ID": "front"}
    camera = MjpegServer(per_connection=100_000, fps=10.0)
    try:
        first, proc, consumer = _frames(camera.url, 4, env)
        assert (state / "front.json").exists()
        _crash(proc, consumer)
        assert (state / "front.json").exists()  # a crash leaves it for the restart
        # The restart: same command, same environment, as Docker's restart policy does.
        again, proc, consumer = _frames(camera.url, 3, env)
        rest = _stop(proc, consumer)
        stderr = proc.stderr.read()
        assert {m.header.session for m in again + rest} == {first[0].header.session}  # one class, one session
        # new frames, new seqs
        assert again[0].header.seq > first[-1].header.seq, (first[-1].header.seq, again[0].header.seq)
        assert [m.header.seq for m in again] == list(range(again[0].header.seq, again[0].header.seq + 3))
        assert "resuming stream front" in stderr and "restart 1" in stderr
        assert not (state / "front.json").exists()  # ended cleanly (eos): the next start is a new stream
        fresh, proc, consumer = _frames(camera.url, 1, env)
        _stop(proc, consumer)
        assert fresh[0].header.session != first[0].header.session and fresh[0].header.seq == 0
    finally:
        camera.close()


def test_a_stale_state_or_another_sources_is_a_new_stream(tmp_path):
    state = tmp_path / "state"
    env = {"CAPTURE_STATE_DIR": str(state), "STREAM_ID": "front", "RESUME_WINDOW_SECONDS": "30"}
    camera = MjpegServer(per_connection=100_000, fps=10.0)
    other = MjpegServer(per_connection=100_000, fps=10.0)
    try:
        first, proc, consumer = _frames(camera.url, 2, env)
        _crash(proc, consumer)
        # Another source under the same stream id is not this stream's restart.
        moved, proc, consumer = _frames(other.url, 1, env)
        stderr = _crash(proc, consumer)
        assert moved[0].header.session != first[0].header.session and moved[0].header.seq == 0
        assert "another stream's" in stderr
        # A state last refreshed longer ago than the window: the box was off, a new class.
        old = time.time() - 31 - HEARTBEAT_SECONDS
        os.utime(state / "front.json", (old, old))
        later, proc, consumer = _frames(other.url, 1, env)
        stderr = _crash(proc, consumer)
        assert later[0].header.session not in (first[0].header.session, moved[0].header.session)
        assert later[0].header.seq == 0
        assert "a new stream" in stderr
    finally:
        camera.close()
        other.close()


def test_a_state_folder_that_cannot_be_written_is_said_once_and_capture_goes_on(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    env = {"CAPTURE_STATE_DIR": str(blocker / "state"), "STREAM_ID": "front"}
    camera = MjpegServer(per_connection=100_000, fps=10.0)
    try:
        frames, proc, consumer = _frames(camera.url, 3, env)
        rest = _stop(proc, consumer)
        stderr = proc.stderr.read()
    finally:
        camera.close()
    assert [m.header.seq for m in frames] == [0, 1, 2] and rest[-1].header.reason == "stopped"
    assert stderr.count("cannot keep capture state") == 1, stderr
    assert "Traceback" not in stderr


def test_a_file_played_to_its_end_is_not_replayed_by_a_restart_policy(tmp_path):
    """Docker's `unless-stopped` starts a capture again after its clean exit at the end of a file:
    that start must not play the file again as a new class (a second report); it waits for its
    stop, and a start after the stop is a new class."""
    from tools.sample_video import make_sample_video

    video = make_sample_video(tmp_path / "class.avi", seconds=1.0, faces=1, fps=10.0)["path"]
    env = {"CAPTURE_STATE_DIR": str(tmp_path / "state"), "STREAM_ID": "front"}
    proc, consumer = start_capture(video, "--fps", "2", env=env, session=None)
    try:
        played = consumer.recv_until_eos()
        assert proc.wait(20) == 0, proc.stderr.read()
    finally:
        consumer.close()
    assert played[-1].header.reason == "end_of_file" and len(played) == 3
    # The restart policy's start: same environment; nothing is sent until it is stopped.
    proc, consumer = start_capture(video, "--fps", "2", env=env, session=None)
    try:
        said = ""
        while "not playing it again" not in said and proc.poll() is None:
            said += proc.stderr.readline()  # the process is up, its signal handler set
        assert "not playing it again" in said, said
        assert consumer.socket.poll(1000) == 0  # no frame, no eos: the class is not played again
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        consumer.close()
    again, proc, consumer = _frames(video, 1, env)  # started after a stop: a new class
    consumer.recv_until_eos()
    assert proc.wait(20) == 0
    consumer.close()
    assert again[0].header.session != played[0].header.session and again[0].header.seq == 0


def test_a_crashed_file_capture_resumes_near_where_it_was_with_the_same_seqs(tmp_path):
    """A video file restarted after a crash (compose's restart policy, or the launcher with the state
    in its run's folder) plays on from a little before where it was, not from its start: paced in real
    time, a restart at minute 30 replayed 30 minutes. The frames keep their seqs (the same frame, the
    same number), and none the crashed run had not handed on is lost (resume_margin)."""
    import json

    from services.capture.resume import resume_margin
    from tools.sample_video import make_sample_video

    video = make_sample_video(tmp_path / "class.avi", seconds=30.0, faces=1, fps=10.0)["path"]
    state = tmp_path / "state"
    # Raw frames, so the socket buffers hold none and the capture is held where the consumer is; the file's
    # own JPEGs (FRAME_ENCODING=auto) fill them by dozens, which resume_margin's frames are for.
    env = {"CAPTURE_STATE_DIR": str(state), "STREAM_ID": "front", "FRAME_ENCODING": "bgr"}
    proc, consumer = start_capture(video, "--fps", "2", env=env, session=None, consumer_hwm=1)
    try:
        first = [consumer.recv(20) for _ in range(30)]  # t 0-14.5 s; the rest waits on the consumer
        deadline = time.monotonic() + HEARTBEAT_SECONDS + 5
        while json.loads((state / "front.json").read_text())["position"] < 10 and time.monotonic() < deadline:
            time.sleep(0.2)  # the heartbeat writes how far the file was played
        position = json.loads((state / "front.json").read_text())["position"]
        _crash(proc, consumer)
    finally:
        proc.kill()
        consumer.close()
    assert position >= first[-1].header.t_media, (position, first[-1].header.t_media)
    proc, consumer = start_capture(video, "--fps", "2", env=env, session=None)
    try:
        try:
            again = consumer.recv_until_eos()
        except AssertionError:
            proc.kill()
            raise AssertionError(proc.stderr.read()) from None
        assert proc.wait(20) == 0
        said = proc.stderr.read()
    finally:
        proc.kill()
        consumer.close()
    frames, eos = again[:-1], again[-1]
    assert f"resuming {video} at {frames[0].header.t_media:.1f} s of media" in said, said
    assert {m.header.session for m in again} == {first[0].header.session}  # one class
    resumed_at = frames[0].header.t_media
    assert resumed_at == pytest.approx(max(0.0, position - resume_margin(2.0, own_jpegs=False)), abs=0.51)
    assert 0 < frames[0].header.seq <= first[-1].header.seq + 1  # not from the start; nothing skipped
    assert all(m.header.seq == round(m.header.t_media * 2) for m in first + frames)  # same frame, same seq
    assert [m.header.seq for m in frames] == list(range(frames[0].header.seq, 60))
    assert eos.header.reason == "end_of_file"


def test_a_file_of_its_own_jpegs_resumes_further_back_than_one_of_raw_frames():
    # The socket buffers hold about one raw frame but dozens of small JPEGs: a crash (and a consumer lost
    # with it) can take that many, so a file whose frames travel as its JPEGs resumes that many frames back.
    from services.capture.resume import RESUME_MARGIN_FRAMES, RESUME_MARGIN_SECONDS, resume_margin

    assert resume_margin(2.0, own_jpegs=False) == RESUME_MARGIN_SECONDS
    assert resume_margin(2.0, own_jpegs=True) == RESUME_MARGIN_FRAMES / 2.0 > RESUME_MARGIN_SECONDS
    assert resume_margin(60.0, own_jpegs=True) == RESUME_MARGIN_SECONDS  # 64 frames at 60 FPS: under 5 s
    assert resume_margin(0.0, own_jpegs=True) == RESUME_MARGIN_SECONDS  # every frame: no rate to count by
