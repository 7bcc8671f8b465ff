"""A frame model's class runs no sequencer (services/launcher/plan.py): inference reads facedetect's `faces`
itself. Over real ZeroMQ sockets with the real face mesh on a real face: a frame's faces sent as they are get the
predictions the sequencer's batch of them gets."""

from __future__ import annotations

import time

import numpy as np
import pytest

from shared.bus.messages import encode, make_header
from tests.inference.faces import face_crop
from tests.inference.harness import Harness
from tests.support.metrics import metric_sum

CROP = 96


def _message(kind: str, stream: str, seq: int, crops: list[np.ndarray], students: list[int]) -> list:
    """A frame's faces as facedetect sends them (`faces`), or as the sequencer's batch of a frame model (`batch`)."""
    faces = [{"student": s, "box": [10 * i, 20, 50, 60], "conf": 0.9} for i, s in enumerate(students)]
    fields = {"faces": faces} if kind == "faces" else {"faces": faces, "students": faces, "length": 1}
    header = make_header(kind, "class-1", stream, seq, time.time(), {"facedetect": time.time()}, width=640,
                         height=480, crop=CROP, t_media=seq * 0.5, **fields)
    return encode(header, b"".join(np.ascontiguousarray(c).tobytes() for c in crops))


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return face_crop(CROP)


def test_a_frames_faces_get_the_predictions_its_batch_gets(face):
    away = np.zeros_like(face)
    h = Harness("--model", "baseline")
    try:
        for seq in range(1, 4):  # two streams, one fed as facedetect sends, one as the sequencer does
            h.send(_message("faces", "direct", seq, [face, away], [1, 2]))
            h.send(_message("batch", "sequenced", seq, [face, away], [1, 2]))
        got = {(m.header.stream, m.header.seq): m.header for m in (h.receive(30) for _ in range(6))}
        for seq in range(1, 4):
            direct, sequenced = got[("direct", seq)], got[("sequenced", seq)]
            assert direct.kind == "predictions"
            assert [(p["student"], p["level"]) for p in direct.predictions] == \
                [(p["student"], p["level"]) for p in sequenced.predictions] == [(1, 0), (2, 3)]
            assert direct.faces == sequenced.faces and direct.t_media == seq * 0.5
        # One student twice: predicted once, on its last face.
        h.send(_message("faces", "direct", 4, [away, face], [5, 5]))
        last = h.receive(30).header
        assert [(p["student"], p["level"]) for p in last.predictions] == [(5, 0)]
        assert metric_sum(h.metrics(), "engagement_messages_rejected_total") == 0
    finally:
        code, err = h.stop()
    assert code == 0, err[-2000:]
