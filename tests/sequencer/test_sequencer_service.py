"""Sequencer ring buffers, stride, eviction and end of stream, through real ZeroMQ sockets.

Each crop is filled with one byte value (the frame number) so the order of the crops in
a batch can be read back.
"""

from __future__ import annotations

import os
import time

import msgpack
import numpy as np
import pytest
import zmq

from services.sequencer.service import STUDENTS_EVICTED, STUDENTS_TRACKED, SequencerService
from shared.bus import metrics
from shared.bus.messages import as_dict, make_header
from tests.harness import Peer, Running
from tests.support.links import link
from tests.support.metrics import counter
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)
CROP = 8


def faces_message(seq: int, students: list[int], t: float, session: str = "s1",
                  crop: int = CROP) -> tuple[dict, bytes]:
    faces = [{"student": s, "box": [10 * s, 10, 40, 40], "conf": 0.9} for s in students]
    header = make_header("faces", session, "cam0", seq, time.time(), width=640, height=480, crop=crop,
                         faces=faces, t_media=t)
    payload = b"".join(bytes([seq % 256]) * (crop * crop * 3) for _ in students)
    return header, payload


@pytest.fixture
def sequencer(request):
    params = getattr(request, "param", {})
    _, faces_in, faces_ep = link("faces")
    batches_out, _, batches_ep = link("batches")
    sender = Peer(zmq.PUSH, faces_ep, bind=True)
    receiver = Peer(zmq.PULL, batches_ep, bind=False)
    values = {"sequence_length": 3, "stride": 2, "student_timeout": 5.0, **params}
    try:
        with Running(SequencerService, faces_in=faces_in, batches_out=batches_out, **values) as service:
            yield service, sender, receiver
    finally:
        sender.close()
        receiver.close()


def exchange(sender: Peer, receiver: Peer, seq: int, students: list[int], t: float, **kw):
    sender.send(*faces_message(seq, students, t, **kw))
    msg = receiver.recv()
    assert msg.kind == "batch" and msg.header.seq == seq
    return msg


def crop_order(msg) -> list[list[int]]:
    """For each student of a batch, the frame number of each of its crops."""
    if not msg.header.students:
        return []
    crops = np.frombuffer(msg.payload, np.uint8).reshape(len(msg.header.students), msg.header.length, -1)
    return [[int(c[0]) for c in student] for student in crops]


def test_full_buffers_are_sent_oldest_first_every_stride_frames(sequencer):
    service, sender, receiver = sequencer
    sent = {}
    for seq in range(8):
        msg = exchange(sender, receiver, seq, [1], t=seq * 0.5)
        assert msg.header.faces[0]["student"] == 1 and msg.header.length == 3 and msg.header.crop == CROP
        sent[seq] = crop_order(msg)
    # Full at frame 2, then every second frame.
    assert sent == {0: [], 1: [], 2: [[0, 1, 2]], 3: [], 4: [[2, 3, 4]], 5: [], 6: [[4, 5, 6]], 7: []}
    assert counter(STUDENTS_TRACKED, "sequencer") == 1


def test_students_fill_up_independently_and_faces_pass_through(sequencer):
    service, sender, receiver = sequencer
    exchange(sender, receiver, 0, [1], 0.0)
    exchange(sender, receiver, 1, [1, 2], 0.5)
    msg = exchange(sender, receiver, 2, [1, 2], 1.0)
    assert [s["student"] for s in msg.header.students] == [1]
    assert [f["student"] for f in msg.header.faces] == [1, 2]
    msg = exchange(sender, receiver, 3, [2, 1], 1.5)
    assert [s["student"] for s in msg.header.students] == [2] and crop_order(msg) == [[1, 2, 3]]


def test_a_student_unseen_for_the_timeout_is_evicted_and_starts_over(sequencer):
    service, sender, receiver = sequencer
    before = counter(STUDENTS_EVICTED, "sequencer", "timeout")
    for seq in range(3):
        exchange(sender, receiver, seq, [1, 2], seq * 0.5)
    exchange(sender, receiver, 3, [2], 3.0)
    assert counter(STUDENTS_EVICTED, "sequencer", "timeout") == before
    exchange(sender, receiver, 4, [2], 6.1)  # student 1 last seen at t=1.0: 5.1 s ago
    assert counter(STUDENTS_EVICTED, "sequencer", "timeout") - before == 1
    assert counter(STUDENTS_TRACKED, "sequencer") == 1
    msg = exchange(sender, receiver, 5, [1, 2], 6.5)
    assert 1 not in [s["student"] for s in msg.header.students]  # its buffer restarted empty


def test_eos_drops_the_session_buffers_and_is_forwarded(sequencer):
    service, sender, receiver = sequencer
    before = counter(STUDENTS_EVICTED, "sequencer", "eos")
    for seq in range(3):
        exchange(sender, receiver, seq, [1, 2], seq * 0.5)
    sender.send(make_header("eos", "s1", "cam0", 3, time.time(), reason="end_of_file"))
    eos = receiver.recv()
    assert eos.kind == "eos" and eos.header.reason == "end_of_file" and "sequencer" in eos.header.stamps
    assert counter(STUDENTS_EVICTED, "sequencer", "eos") - before == 2
    assert counter(STUDENTS_TRACKED, "sequencer") == 0
    assert exchange(sender, receiver, 0, [1], 0.0).header.students == []


@pytest.mark.parametrize("sequencer", [{"student_timeout": 0.3}], indirect=True)
def test_a_stream_that_goes_quiet_is_dropped_by_wall_clock(sequencer):
    service, sender, receiver = sequencer
    before = counter(STUDENTS_EVICTED, "sequencer", "quiet")
    exchange(sender, receiver, 0, [1, 2, 3], 0.0)
    wait_until(lambda: counter(STUDENTS_EVICTED, "sequencer", "quiet") != before, timeout=10)
    assert counter(STUDENTS_EVICTED, "sequencer", "quiet") - before == 3
    assert not service.streams


@pytest.mark.parametrize("sequencer", [{"sequence_length": 1, "stride": 1}], indirect=True)
def test_frame_models_get_every_face_every_frame(sequencer):
    service, sender, receiver = sequencer
    for seq in range(3):
        msg = exchange(sender, receiver, seq, [4, 7], seq * 0.5)
        assert [s["student"] for s in msg.header.students] == [4, 7]
        assert crop_order(msg) == [[seq], [seq]]


def test_bad_input_is_counted_and_the_next_good_message_is_answered(sequencer):
    service, sender, receiver = sequencer
    header, payload = faces_message(0, [1], 0.0)

    def rejected(reason: str) -> float:
        return counter(metrics.MESSAGES_REJECTED, "sequencer", reason)

    reasons = ["bad_msgpack", "wrong_version", "payload_size", "unexpected_kind", "bad_box"]
    before = {r: rejected(r) for r in reasons}
    sender.send_raw([b"faces", os.urandom(50), os.urandom(30)])
    sender.send_raw([b"faces", msgpack.packb({**as_dict(header), "v": 0}), payload])
    sender.send(header, payload[:-1])  # one byte short of the crop the header announces
    frame = make_header("frame", "s1", "cam0", 0, time.time(), width=2, height=2, encoding="bgr")
    sender.send(frame, bytes(12))
    sender.send({**as_dict(header), "faces": [{"student": 1, "box": [1, 2]}]}, payload)
    msg = exchange(sender, receiver, 1, [1], 0.5)
    assert [f["student"] for f in msg.header.faces] == [1]
    for reason in reasons:
        assert rejected(reason) - before[reason] == 1, reason


def distinct_faces_message(seq: int, students: list[int]) -> tuple[dict, bytes]:
    """A faces message whose i-th crop is filled with 10 * seq + i: which face a crop came from reads back."""
    header, _ = faces_message(seq, students, seq * 0.5)
    return header, b"".join(bytes([(10 * seq + i) % 256]) * (CROP * CROP * 3) for i in range(len(students)))


def crop_faces(msg) -> list[int]:
    return [row[0] for row in crop_order(msg)]


@pytest.mark.parametrize("sequencer", [{"sequence_length": 1, "stride": 1}], indirect=True)
def test_a_frame_models_batch_is_the_frames_own_crops_and_nothing_is_buffered(sequencer):
    service, sender, receiver = sequencer
    sender.send(*distinct_faces_message(1, [4, 7, 9]))
    msg = receiver.recv()
    assert [s["student"] for s in msg.header.students] == [4, 7, 9] and crop_faces(msg) == [10, 11, 12]
    assert msg.payload == distinct_faces_message(1, [4, 7, 9])[1]
    # A student listed twice in one frame is sent once, with its later crop (as the buffer of one kept it).
    sender.send(*distinct_faces_message(2, [4, 7, 4]))
    msg = receiver.recv()
    assert [s["student"] for s in msg.header.students] == [4, 7] and crop_faces(msg) == [22, 21]
    assert all(len(b.crops) == 0 for streams in service.streams.values() for b in streams.students.values())


@pytest.mark.parametrize("sequencer", [{"sequence_length": 1, "stride": 2}], indirect=True)
def test_a_frame_model_with_a_stride_gets_each_students_crop_of_the_frame_it_is_due_in(sequencer):
    service, sender, receiver = sequencer
    sent = []
    for seq, students in enumerate([[1, 2], [1, 2, 3], [2, 3], [3]]):
        sender.send(*distinct_faces_message(seq, students))
        msg = receiver.recv()
        sent.append(list(zip([s["student"] for s in msg.header.students], crop_faces(msg), strict=True)))
    # Each student is due at once (a new buffer), then every 2nd frame it is in; its crop is this frame's.
    assert sent == [[(1, 0), (2, 1)], [(3, 12)], [(2, 20)], [(3, 30)]]
