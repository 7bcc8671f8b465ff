"""The facedetect service run on gallery frames through real ZeroMQ sockets (tests/facedetect)."""

from __future__ import annotations

import time

import numpy as np
import zmq

from services.facedetect.service import FaceDetectService
from shared.bus.messages import Message, make_header
from tests.harness import Peer, Running
from tests.support.links import link

SIZE = (1920, 1080)


def frame_header(image: np.ndarray, seq: int, t: float):
    h, w = image.shape[:2]
    return make_header("frame", "gallery", "screen", seq, time.time(), width=w, height=h, encoding="bgr",
                       t_media=t, source="test")


def run_facedetect(frames: list[np.ndarray], pace: float = 0.0, **settings) -> list[Message]:
    """One `faces` message per frame (stream gallery/screen), from a facedetect with `settings`;
    `pace`: at least this many seconds between one frame and the next."""
    _, frames_in, frames_ep = link("frames")
    faces_out, _, faces_ep = link("faces")
    sender = Peer(zmq.PUSH, frames_ep, bind=True)
    receiver = Peer(zmq.PULL, faces_ep, bind=False)
    # One message back per frame, at once: a face outside a grid is a student at once here (these
    # tests are about the grid; tests/facedetect/test_identity.py is about when a face is one).
    settings.setdefault("track_min_seconds", 0)
    try:
        with Running(FaceDetectService, frames_in=frames_in, faces_out=faces_out, crop_size=64, **settings):
            got = []
            for seq, image in enumerate(frames):
                sender.send(frame_header(image, seq, seq * 0.5), image.tobytes())
                got.append(receiver.recv(60))
                time.sleep(pace)
            return got
    finally:
        sender.close()
        receiver.close()
