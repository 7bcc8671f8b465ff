"""Frames with a tentative face wait, in order, and leave with the tracker's decision applied."""

from __future__ import annotations

import numpy as np

from services.facedetect.holdback import Held, Holdback
from shared.bus.messages import make_header
from shared.vision.detectors import Detection

KEY = ("s", "cam0")


def held(seq: int, ids: list[int]) -> Held:
    frame = make_header("frame", "s", "cam0", seq, 0.0, width=640, height=480, encoding="jpeg")
    return Held(frame, 640, 480, ids, [Detection((10 * k, 0, 5, 5), 0.9) for k in range(len(ids))],
                [np.full((2, 2, 3), k, np.uint8) for k in range(len(ids))])


def test_frames_wait_for_a_tentative_face_and_leave_in_order_with_its_student_id():
    hold = Holdback()
    assert [h.source.seq for h in hold.push(KEY, held(0, [1]), {})] == [0]  # nothing tentative: at once
    assert hold.push(KEY, held(1, [1, -1]), {}) == []
    assert hold.push(KEY, held(2, [1]), {}) == []  # behind a waiting frame: order is kept
    out = hold.push(KEY, held(3, [1, 2]), {-1: 2})
    assert [(h.source.seq, h.ids) for h in out] == [(1, [1, 2]), (2, [1]), (3, [1, 2])]


def test_a_set_aside_face_leaves_its_frames_without_it_crop_and_all():
    hold = Holdback()
    hold.push(KEY, held(0, [1, -4]), {})
    out, _ = hold.push(KEY, held(1, [1]), {-4: None})
    assert out.ids == [1] and len(out.detections) == len(out.crops) == 1 and out.crops[0].max() == 0
    [later] = hold.push(KEY, held(2, [-4, 1]), {})  # the tracker still follows the set-aside hand
    assert later.ids == [1] and later.detections[0].box == (10, 0, 5, 5)


def test_the_end_of_a_stream_sends_what_waits_without_undecided_faces():
    hold = Holdback()
    hold.push(KEY, held(0, [-1]), {})
    hold.push(KEY, held(1, [-1, -2]), {})
    out = hold.flush(KEY, {-1: 3})
    assert [(h.source.seq, h.ids) for h in out] == [(0, [3]), (1, [3])]
    assert hold.flush(KEY, {}) == []


def test_a_decision_that_never_comes_holds_no_more_than_the_bound():
    hold = Holdback(max_waiting=3)
    assert hold.push(KEY, held(0, [1, -1]), {}) == []
    for seq in (1, 2):
        assert hold.push(KEY, held(seq, [1]), {}) == []
    out = hold.push(KEY, held(3, [1]), {})  # a fourth frame: the oldest goes without the undecided face
    assert [(h.source.seq, h.ids) for h in out] == [(0, [1]), (1, [1]), (2, [1]), (3, [1])]
    assert hold.forced == 1 and hold.waiting(KEY) == 0


def test_the_waiting_crops_bytes_are_bounded_too():
    hold = Holdback(max_bytes=2 * 2 * 2 * 3)  # two faces' crops of held()
    assert hold.push(KEY, held(0, [-1]), {}) == []
    assert hold.push(KEY, held(1, [1]), {}) == []
    out = hold.push(KEY, held(2, [1]), {})  # a third crop: over the bound, the oldest goes without its face
    assert [(h.source.seq, h.ids) for h in out] == [(0, []), (1, [1]), (2, [1])] and hold.forced == 1
