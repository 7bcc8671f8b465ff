"""capture -> facedetect -> sequencer as three real OS processes on loopback ZeroMQ.

A sample video with a real face (that leaves the frame for a while) goes in; one batch per
sampled frame comes out, in order, with the face where the video has it, one stable
student id, and the end of stream last.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import zmq

from tests.harness import Peer
from tests.support.links import link
from tools.sample_video import make_sample_video

pytestmark = pytest.mark.timeout(120)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(name: str, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engagement.cli", name, "--metrics-port", "0",
                             "--session-id", "chain", *flags], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_video_through_capture_facedetect_sequencer_processes(tmp_path):
    info = make_sample_video(tmp_path / "chain.avi", seconds=5.0, faces=1, fps=10.0)
    frames_out, frames_in, _ = link("frames")
    faces_out, faces_in, _ = link("faces")
    batches_out, _, batches_ep = link("batches")
    procs = [
        start("sequencer", "--faces-in", faces_in, "--batches-out", batches_out,
              "--sequence-length", "2", "--stride", "1"),
        start("facedetect", "--frames-in", frames_in, "--faces-out", faces_out, "--crop-size", "64"),
        start("capture", "--source", info["path"], "--fps", "2", "--frames-out", frames_out,
              "--preview-out", link("preview")[0]),
    ]
    consumer = Peer(zmq.PULL, batches_ep, bind=False)
    try:
        got = consumer.recv_until_eos(timeout=90)
        assert procs[2].wait(30) == 0  # capture exits by itself after the end of the file
    finally:
        consumer.close()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        codes = [proc.wait(30) for proc in procs]
    batches, eos = got[:-1], got[-1]
    assert codes == [0, 0, 0], [p.stderr.read()[-2000:] for p in procs]
    assert eos.header.reason == "end_of_file" and set(eos.header.stamps) >= {"capture", "facedetect", "sequencer"}
    sampled = [i for i in range(info["frames"]) if i % 5 == 0]  # 10 FPS file at --fps 2
    assert [b.header.seq for b in batches] == list(range(len(sampled)))
    assert [len(b.header.faces) for b in batches] == [int(info["present"][i]) for i in sampled]
    assert {f["student"] for b in batches for f in b.header.faces} == {1}
    # With length 2 and stride 1 a student is sent once it has two crops.
    assert any(b.header.students for b in batches)
    assert all(len(b.payload) == len(b.header.students) * 2 * 64 * 64 * 3 for b in batches)
