"""Detect every N frames, follow the faces in between: on the sample video's real faces.

The follower is checked against a fresh detection on the same frames (the boxes it follows
stay on the faces), and for each reason it must hand back to the detector: due, a face that
leaves, a new face arriving elsewhere. Then through the service, on real sockets.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from bench.detectors import _found
from services.facedetect.follow import Follower
from services.facedetect.service import FaceDetectService
from shared.bus.messages import make_header
from shared.vision.detectors import make_detector
from tests.harness import Peer, Running
from tests.support.faces import iou
from tests.support.links import link
from tools.sample_video import HEIGHT, WIDTH, _grid, render_frame

pytestmark = pytest.mark.timeout(120)
KEY = ("s1", "cam0")
SECONDS = 20.0  # the sample's timeline: faces absent 6.4-8.4 s and 14.8-16 s


@pytest.fixture(scope="module")
def detector():
    return make_detector("blazeface")


def run(follower: Follower, detector, frames: list[np.ndarray]) -> list[tuple[str, list]]:
    out = []
    for frame in frames:
        found, why = follower.follow(KEY, frame)
        if found is None:
            found = detector.detect(frame)
            follower.detected(KEY, frame, found)
        out.append((why, found))
    return out


@pytest.mark.parametrize("faces", [1, 8])
def test_followed_boxes_stay_on_the_faces(detector, faces):
    # 2 FPS over the first 6 s: the faces drift and turn their heads, nobody leaves.
    frames = [render_frame(i * 0.5, SECONDS, faces) for i in range(12)]
    steps = run(Follower(every=3), detector, frames)
    whys = [w for w, _ in steps]
    assert whys.count("followed") >= 4, whys  # detection ran on well under every frame
    assert whys[0] == "first"
    # Each student stays in its own cell of the sample's grid: one box centred in each cell.
    cols, rows = _grid(faces)
    cells = [((k % cols) * WIDTH // cols, (k // cols) * HEIGHT // rows, WIDTH // cols, HEIGHT // rows)
             for k in range(faces)]
    # (Detections are the detector's own business, tested in tests/shared/test_detectors.py.)
    detected = {i for i, (why, _) in enumerate(steps) if why != "followed"}
    first_faces = len(steps[0][1])
    for why, found in (s for i, s in enumerate(steps) if i not in detected):
        assert len(found) <= faces and _found([d.box for d in found], cells) == len(found), (why, found)
        assert len(found) >= first_faces - 1 and _found([d.box for d in found], cells) == faces, (why, found)
    # And where a fresh detection finds a face, the followed box is on it.
    for i, (frame, (why, found)) in enumerate(zip(frames, steps, strict=True)):
        if i in detected:
            continue
        for t in detector.detect(frame):
            assert max(iou(d.box, t.box) for d in found) > 0.5, (why, t, found)


def test_a_detection_is_due_every_n_frames(detector):
    frames = [render_frame(0.0, SECONDS, 1)] * 7  # a still frame: nothing else could trigger one
    whys = [w for w, _ in run(Follower(every=3), detector, frames)]
    assert whys == ["first", "followed", "followed", "due", "followed", "followed", "due"]
    assert [w for w, _ in run(Follower(every=1), detector, frames)] == ["first"] * 7


def test_a_face_that_leaves_is_lost_at_once(detector):
    present, gone = render_frame(6.0, SECONDS, 1), render_frame(7.0, SECONDS, 1)  # she leaves at 6.4 s
    steps = run(Follower(every=10), detector, [present, gone])
    assert steps[1][0] in ("lost", "change") and steps[1][1] == []


def test_a_new_face_elsewhere_triggers_a_detection(detector):
    one = render_frame(0.0, SECONDS, 1)
    two = one.copy()
    x, y, w, h = detector.detect(one)[0].box
    face = one[y - h // 3:y + h + h // 3, x - w // 3:x + w + w // 3]  # a second student sits down, top right
    two[40:40 + face.shape[0], 440:440 + face.shape[1]] = face
    steps = run(Follower(every=10), detector, [one, one, two])
    assert [w for w, _ in steps] == ["first", "followed", "change"]
    assert len(steps[2][1]) == 2


def test_the_service_follows_between_detections_and_keeps_ids(metric):
    _, frames_in, frames_ep = link("frames")
    faces_out, _, faces_ep = link("faces")
    sender = Peer(zmq.PUSH, frames_ep, bind=True)
    receiver = Peer(zmq.PULL, faces_ep, bind=False)
    before = {w: metric("engagement_detect_runs_total", reason=w) for w in ("first", "followed", "due")}
    try:
        with Running(FaceDetectService, frames_in=frames_in, faces_out=faces_out, crop_size=64, detect_every=3):
            for seq in range(6):
                image = render_frame(seq * 0.5, SECONDS, 8)
                header = make_header("frame", "s1", "cam0", seq, time.time(), width=640, height=480,
                                     encoding="bgr", t_media=seq * 0.5, source="test")
                sender.send(header, image.tobytes())
            # New faces are students once seen for TRACK_MIN_SECONDS: the first frames wait for that.
            msgs = [receiver.recv() for _ in range(6)]
    finally:
        sender.close()
        receiver.close()
    assert all(len(m.header.faces) == 8 for m in msgs)
    assert len({tuple(sorted(f["student"] for f in m.header.faces)) for m in msgs}) == 1  # ids kept throughout
    runs = {w: metric("engagement_detect_runs_total", reason=w) - before[w] for w in before}
    assert runs["first"] == 1 and runs["followed"] >= 3, runs
