"""A frame model's batch (shared/bus/frame_batch.py): what the sequencer sends for a frame model and what inference
makes of facedetect's faces when no sequencer runs are the same crops, students and order."""

from __future__ import annotations

import time

import numpy as np

from services.sequencer.buffers import StreamBuffers
from shared.bus.frame_batch import frame_batch
from shared.bus.messages import Message, make_header

CROP = 8


def _faces_message(students: list[int]) -> Message:
    faces = [{"student": s, "box": [10.0 * i, 20.0, 30.0, 40.0], "conf": 0.5 + i / 10} for i, s in enumerate(students)]
    crops = b"".join(np.full((CROP, CROP, 3), i, np.uint8).tobytes() for i in range(len(students)))
    header = make_header("faces", "class-1", "cam0", 7, time.time(), {"facedetect": time.time()}, width=640,
                         height=480, crop=CROP, faces=faces, t_media=3.5)
    return Message(kind="faces", header=header, payload=crops)


def _sequencer_batch(msg: Message) -> tuple[list[dict], bytes]:
    """The sequencer's batch of a frame model (SEQUENCE_LENGTH 1, STRIDE 1), as services/sequencer makes it."""
    buffers = StreamBuffers(CROP, 1, 1)
    due = buffers.add(msg.header.faces, msg.payload, 3.5, time.monotonic())
    students = [{"student": b.student, "box": b.box, "conf": b.conf} for b in due]
    return students, bytes(buffers.batch_payload(due, msg.payload, len(msg.header.faces)))


def test_every_face_once_in_order_is_the_received_payload_itself():
    msg = _faces_message([4, 2, 9])
    batch = frame_batch(msg)
    assert batch.kind == "batch" and batch.header.kind == "batch"
    assert batch.payload is msg.payload  # not a copy
    h = batch.header
    assert (h.length, h.crop, h.width, h.height, h.t_media, h.seq) == (1, CROP, 640, 480, 3.5, 7)
    assert [s["student"] for s in h.students] == [4, 2, 9] and h.faces == msg.header.faces
    assert h.stamps == msg.header.stamps  # no stage came between
    batch.header.check_payload(batch.payload)  # what the batch's own contract asks


def test_a_student_listed_twice_is_predicted_once_as_the_sequencer_does():
    msg = _faces_message([4, 2, 4, 9])  # two detections the tracker gave one id
    batch = frame_batch(msg)
    students, payload = _sequencer_batch(msg)
    assert [s["student"] for s in batch.header.students] == [4, 2, 9]
    assert batch.header.students == students and bytes(batch.payload) == payload
    # Student 4 keeps its last face: the third crop (all 2s), its box and confidence.
    assert bytes(batch.payload)[:CROP * CROP * 3] == bytes([2]) * (CROP * CROP * 3)
    assert batch.header.students[0]["box"] == [20.0, 20.0, 30.0, 40.0]
    batch.header.check_payload(batch.payload)


def test_the_other_kinds_pass_as_they_are():
    eos = Message(kind="eos", header=make_header("eos", "class-1", "cam0", 8, time.time(), reason="end_of_file"))
    assert frame_batch(eos) is eos
