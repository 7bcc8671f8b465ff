"""Screen, region and window sources on a real X server (Xvfb) with a real player window.

ffplay plays a gallery video of lfw faces in a window; capture runs as its own OS process
and sends over real ZeroMQ sockets, as in `engagement run`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from services.facedetect.gallery import find_tiles
from shared.ops.service import EXIT_GAVE_UP
from tests.harness import Peer
from tests.support.links import link
from tools.gallery_video import make_gallery_video
from tools.xdisplay import move_window, player, xvfb

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TITLE = "Class gallery"


@pytest.fixture(scope="module")
def display():
    with xvfb() as name:
        yield name


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    path = tmp_path_factory.mktemp("screen") / "gallery3.avi"
    return make_gallery_video(path, grid=3, seconds=6.0, fps=10.0, size=(960, 540))


def start_capture(display: str, source: str, *flags: str) -> tuple[subprocess.Popen, Peer]:
    frames_out, _, endpoint = link("frames")
    preview_out, _, _ = link("preview")
    consumer = Peer(zmq.PULL, endpoint, bind=False)
    proc = subprocess.Popen([sys.executable, "-m", "engagement.cli", "capture", "--source", source,
                             "--frames-out", frames_out, "--preview-out", preview_out, "--metrics-port", "0",
                             "--session-id", "screen-test", "--retry-max-seconds", "0.5", *flags],
                            cwd=REPO, env=dict(os.environ, DISPLAY=display),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, consumer


def image_of(msg) -> np.ndarray:
    return np.frombuffer(msg.payload, np.uint8).reshape(msg.header.height, msg.header.width, 3)


def test_window_is_captured_at_its_size_followed_when_moved_and_its_close_ends_the_stream(display, gallery):
    with player(display, gallery["path"], TITLE, left=40, top=30) as ffplay:
        proc, consumer = start_capture(display, f"window:{TITLE.lower()}", "--fps", "4")
        try:
            first = consumer.recv(30)
            assert first.kind == "frame"
            assert (first.header.width, first.header.height) == (960, 540)  # the window's own size, not 640x480
            assert first.header.t_media is None and first.header.source == f"window:{TITLE.lower()}"
            assert len(find_tiles(image_of(first))) >= 6  # the player's gallery, grabbed off the screen
            move_window(display, TITLE, 500, 400)
            deadline = time.monotonic() + 10
            moved = None
            while moved is None and time.monotonic() < deadline:
                msg = consumer.recv(10)
                if len(find_tiles(image_of(msg))) >= 6 and msg.header.seq > first.header.seq + 6:
                    moved = msg  # frames after the move still show the whole gallery
            assert moved is not None, "no whole-gallery frame after the window moved"
            ffplay.terminate()
            rest = consumer.recv_until_eos(30)
            code = proc.wait(20)
        finally:
            consumer.close()
            if proc.poll() is None:
                proc.kill()
    stderr = proc.stderr.read()
    assert rest[-1].header.reason == "window_closed"
    assert code == 0
    assert "moved or resized to 960x540 at +500+400" in stderr
    assert "Traceback" not in stderr


def test_whole_screen_and_a_region(display):
    for source, size in (("screen", (1920, 1080)), ("region:100,50,640,360", (640, 360))):
        proc, consumer = start_capture(display, source, "--fps", "5")
        try:
            frames = [consumer.recv(30) for _ in range(3)]
            proc.terminate()
            rest = consumer.recv_until_eos(20)
            assert proc.wait(20) == 0
        finally:
            consumer.close()
        assert all((m.header.width, m.header.height) == size for m in frames), source
        assert rest[-1].header.reason == "stopped"
        # Paced by the source at --fps: three frames take about 0.4 s, not a burst.
        assert frames[2].header.t_capture - frames[0].header.t_capture >= 0.3, \
            [(m.header.seq, m.header.t_capture) for m in frames]


@pytest.mark.parametrize("source, says", [
    ("window:no such window", "no window titled 'no such window'"),
    ("screen:7", "no monitor '7'"),
    ("region:5000,5000,100,100", "is off the screen"),
])
def test_a_missing_window_monitor_or_region_is_one_clear_line_and_gave_up(display, source, says):
    proc, consumer = start_capture(display, source)
    try:
        got = consumer.recv_until_eos(30)
        code = proc.wait(30)
    finally:
        consumer.close()
    stderr = proc.stderr.read()
    assert [m.kind for m in got] == ["eos"] and got[0].header.reason == "source_failed"
    assert code == EXIT_GAVE_UP
    assert says in stderr and "Traceback" not in stderr


def test_no_display_is_a_clear_error(tmp_path):
    proc, consumer = start_capture(":99999", "screen")
    try:
        got = consumer.recv_until_eos(30)
        code = proc.wait(30)
    finally:
        consumer.close()
    stderr = proc.stderr.read()
    assert got[-1].header.reason == "source_failed" and code == EXIT_GAVE_UP
    assert "cannot open the X display" in stderr and "Traceback" not in stderr


def test_engagement_run_with_a_missing_window_stops_at_start_up_in_one_line(display, tmp_path):
    from tests.support.runs import engagement

    out = engagement(tmp_path, "run", "--source", "window:no such call", env={"DISPLAY": display}, timeout=60)
    assert out.code == 2
    assert out.err_lines == [line for line in out.err_lines if line.startswith("engagement run: source:")]
    assert "no window titled 'no such call'" in out.err and "Traceback" not in out.err
