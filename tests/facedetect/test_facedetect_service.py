"""Face detection on real faces (scikit-image's astronaut), through real ZeroMQ sockets."""

from __future__ import annotations

import os
import time

import cv2
import msgpack
import numpy as np
import pytest
import zmq

from services.capture.sources import FileSource
from services.facedetect.service import FACES_DETECTED, SET_ASIDE, FaceDetectService
from shared.bus import metrics
from shared.bus.messages import as_dict, make_header
from tests.harness import Peer, Running
from tests.support.faces import astronaut, iou
from tests.support.links import link
from tests.support.metrics import counter
from tests.support.waiting import wait_until
from tools.sample_video import make_sample_video, render_frame

pytestmark = pytest.mark.timeout(120)

# res10 finds the astronaut's face here in the original 512x512 image.
ASTRONAUT_FACE = (179, 57, 92, 120)


def frame_header(image: np.ndarray, seq: int, session: str = "s1", encoding: str = "bgr",
                 t_media: float | None = None, **extra):
    h, w = image.shape[:2]
    return make_header("frame", session, "cam0", seq, time.time(), width=w, height=h, encoding=encoding,
                       t_media=seq * 0.5 if t_media is None else t_media, source="test", **extra)


@pytest.fixture
def facedetect():
    _, frames_in, frames_ep = link("frames")
    faces_out, _, faces_ep = link("faces")
    sender = Peer(zmq.PUSH, frames_ep, bind=True)
    receiver = Peer(zmq.PULL, faces_ep, bind=False)
    try:
        # These tests are about finding faces and their crops, one frame at a time: a face is a
        # student at once (track_min_seconds=0). tests/facedetect/test_identity.py keeps the default.
        with Running(FaceDetectService, frames_in=frames_in, faces_out=faces_out, crop_size=96,
                     track_min_seconds=0) as service:
            yield service, sender, receiver
    finally:
        sender.close()
        receiver.close()


def test_finds_the_astronaut_and_sends_a_crop_of_the_right_shape(facedetect):
    service, sender, receiver = facedetect
    before = counter(FACES_DETECTED, "facedetect")
    image = astronaut()
    sender.send(frame_header(image, 0), image.tobytes())
    msg = receiver.recv()
    assert msg.kind == "faces" and msg.header.seq == 0 and msg.header.crop == 96
    assert len(msg.header.faces) == 1
    face = msg.header.faces[0]
    assert face["conf"] > 0.9 and iou(face["box"], ASTRONAUT_FACE) > 0.6
    crops = np.frombuffer(msg.payload, np.uint8).reshape(-1, 96, 96, 3)
    assert crops.shape == (1, 96, 96, 3) and crops.std() > 10  # a picture, not padding
    assert "facedetect" in msg.header.stamps and msg.header.t_media == 0.0
    assert counter(FACES_DETECTED, "facedetect") - before == 1


def test_jpeg_frames_are_decoded(facedetect):
    service, sender, receiver = facedetect
    image = astronaut()
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    sender.send(frame_header(image, 0, encoding="jpeg"), jpeg)
    msg = receiver.recv()
    assert len(msg.header.faces) == 1 and (msg.header.width, msg.header.height) == (512, 512)


def test_a_frame_without_faces_still_gets_a_faces_message(facedetect):
    service, sender, receiver = facedetect
    empty = render_frame(0.0, 10.0, faces=0)
    sender.send(frame_header(empty, 0), empty.tobytes())
    msg = receiver.recv()
    assert msg.header.faces == [] and msg.payload == b""


def test_every_face_of_a_crowded_frame_gets_its_own_stable_id(facedetect):
    service, sender, receiver = facedetect
    ids = []
    for seq in range(3):
        image = render_frame(seq * 0.5, 20.0, faces=8)
        sender.send(frame_header(image, seq), image.tobytes())
        msg = receiver.recv()
        assert len(msg.header.faces) == 8
        assert len(msg.payload) == 8 * 96 * 96 * 3
        ids.append(sorted(f["student"] for f in msg.header.faces))
    assert len(set(ids[0])) == 8
    assert ids[0] == ids[1] == ids[2]


def test_the_sample_video_keeps_one_student_id_through_the_faceless_stretches(facedetect, tmp_path):
    service, sender, receiver = facedetect
    info = make_sample_video(tmp_path / "s.avi", seconds=6.0, faces=1, fps=10.0)
    source = FileSource(info["path"])
    results = []
    while (frame := source.read()) is not None:
        if frame.index % 5:  # 2 FPS, as capture would sample it
            continue
        sender.send(frame_header(frame.image, frame.index, t_media=frame.t_media), frame.image.tobytes())
        msg = receiver.recv()
        results.append((info["present"][frame.index], msg.header.faces))
    source.release()
    assert len(results) == 12
    assert [len(faces) for _, faces in results] == [int(present) for present, _ in results]
    assert not all(present for present, _ in results)  # the face did leave
    assert {f["student"] for _, faces in results for f in faces} == {1}


def test_sequence_gaps_count_as_dropped_frames_and_eos_is_forwarded_and_resets_ids(facedetect):
    service, sender, receiver = facedetect
    image = astronaut()
    before = counter(metrics.FRAMES_DROPPED, "facedetect", "gap")
    for seq in (0, 1, 4):
        sender.send(frame_header(image, seq), image.tobytes())
        assert receiver.recv().header.seq == seq
    assert counter(metrics.FRAMES_DROPPED, "facedetect", "gap") - before == 2
    sender.send(make_header("eos", "s1", "cam0", 5, time.time(), reason="end_of_file"))
    eos = receiver.recv()
    assert eos.kind == "eos" and eos.header.reason == "end_of_file" and "facedetect" in eos.header.stamps
    # The stream starts over: ids start over and seq 0 is no gap.
    shifted = np.roll(image, 150, axis=1)
    sender.send(frame_header(shifted, 0), shifted.tobytes())
    assert [f["student"] for f in receiver.recv().header.faces] == [1]
    assert counter(metrics.FRAMES_DROPPED, "facedetect", "gap") - before == 2


def test_bad_input_is_counted_and_the_next_good_frame_is_answered(facedetect):
    service, sender, receiver = facedetect
    image = astronaut()
    good = frame_header(image, 0)

    def rejected(reason: str) -> float:
        return counter(metrics.MESSAGES_REJECTED, "facedetect", reason)

    reasons = ["bad_msgpack", "wrong_version", "payload_size", "wrong_part_count", "undecodable_frame"]
    before = {r: rejected(r) for r in reasons}
    sender.send_raw([b"frame", os.urandom(64), os.urandom(100)])
    sender.send_raw([b"frame", msgpack.packb({**as_dict(good), "v": 99}), image.tobytes()])
    sender.send(frame_header(image, 1), image.tobytes()[:1000])  # header says 512x512x3
    sender.send_raw([b"frame"])
    sender.send(frame_header(image, 2, encoding="jpeg"), b"\xff\xd8" + os.urandom(5000))
    sender.send(frame_header(image, 3), image.tobytes())
    msg = receiver.recv()
    assert msg.header.seq == 3 and len(msg.header.faces) == 1
    for reason in reasons:
        assert rejected(reason) - before[reason] == 1, reason


@pytest.mark.skipif(not hasattr(cv2, "CascadeClassifier"),
                    reason="OpenCV 5 has no cascade classifier in its main package")
def test_the_haar_backend_finds_the_astronaut_too():
    _, frames_in, frames_ep = link("frames")
    faces_out, _, faces_ep = link("faces")
    sender = Peer(zmq.PUSH, frames_ep, bind=True)
    receiver = Peer(zmq.PULL, faces_ep, bind=False)
    try:
        with Running(FaceDetectService, detector="haar", frames_in=frames_in, faces_out=faces_out, crop_size=64,
                     track_min_seconds=0):
            image = astronaut()
            sender.send(frame_header(image, 0), image.tobytes())
            msg = receiver.recv()
    finally:
        sender.close()
        receiver.close()
    assert len(msg.header.faces) == 1 and iou(msg.header.faces[0]["box"], ASTRONAUT_FACE) > 0.5


def test_a_stream_that_goes_silent_without_eos_is_forgotten(monkeypatch):
    import services.facedetect.service as facedetect_module

    monkeypatch.setattr(facedetect_module, "STREAM_IDLE_SECONDS", 0.2)
    _, frames_in, frames_ep = link("frames")
    faces_out, _, faces_ep = link("faces")
    sender = Peer(zmq.PUSH, frames_ep, bind=True)
    receiver = Peer(zmq.PULL, faces_ep, bind=False)
    try:
        with Running(FaceDetectService, track_max_age=0.05, frames_in=frames_in, faces_out=faces_out,
                     crop_size=64) as service:
            image = astronaut()
            before = counter(SET_ASIDE, "facedetect", "short_lived")
            sender.send(frame_header(image, 0), image.tobytes())
            wait_until(lambda: service.last_seq, timeout=10)
            # The new face is tentative: its frame waits, until the idle stream is forgotten; then it
            # goes, without the face (seen in one frame: short-lived, set aside and counted).
            msg = receiver.recv()
            assert msg.header.seq == 0 and msg.header.faces == [] and msg.payload == b""
            assert counter(SET_ASIDE, "facedetect", "short_lived") - before == 1
            assert not service.tracker.streams and not service.last_seq
    finally:
        sender.close()
        receiver.close()
