"""A capture restarted by a supervisor that cannot say it is a restart (Docker's restart
policy in compose): with CAPTURE_STATE_DIR it finds its stream's state and resumes, keeping
the session and continuing seq past the crashed run's. Real capture processes on a real MJPEG
camera over HTTP, killed with SIGKILL as a crash is."""

from __future__ import annotations

import os
import signal
import time

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


def _crash(proc, consumer) -> str:  # type: ignore[no-untyped-def]
    proc.send_signal(signal.SIGKILL)
    proc.wait(20)
    consumer.close()
    return proc.stderr.read()


def _stop(proc, consumer) -> list:  # type: ignore[no-untyped-def]
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
        assert {m["session"] for m in again + rest} == {first[0]["session"]}  # one class, one session
        assert again[0]["seq"] > first[-1]["seq"], (first[-1]["seq"], again[0]["seq"])  # new frames, new seqs
        assert [m["seq"] for m in again] == list(range(again[0]["seq"], again[0]["seq"] + 3))
        assert "resuming stream front" in stderr and "restart 1" in stderr
        assert not (state / "front.json").exists()  # ended cleanly (eos): the next start is a new stream
        fresh, proc, consumer = _frames(camera.url, 1, env)
        _stop(proc, consumer)
        assert fresh[0]["session"] != first[0]["session"] and fresh[0]["seq"] == 0
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
        assert moved[0]["session"] != first[0]["session"] and moved[0]["seq"] == 0
        assert "another stream's" in stderr
        # A state last refreshed longer ago than the window: the box was off, a new class.
        old = time.time() - 31 - HEARTBEAT_SECONDS
        os.utime(state / "front.json", (old, old))
        later, proc, consumer = _frames(other.url, 1, env)
        stderr = _crash(proc, consumer)
        assert later[0]["session"] not in (first[0]["session"], moved[0]["session"]) and later[0]["seq"] == 0
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
    assert [m["seq"] for m in frames] == [0, 1, 2] and rest[-1]["reason"] == "stopped"
    assert stderr.count("cannot keep capture state") == 1, stderr
    assert "Traceback" not in stderr
