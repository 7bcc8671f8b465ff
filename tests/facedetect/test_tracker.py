"""The tracker keeps ids across small moves and short losses, and gives new faces new ids."""

from __future__ import annotations

from services.facedetect.tracker import Tracker

KEY = ("s", "cam0")


def test_a_moving_face_keeps_its_id():
    tracker = Tracker(min_iou=0.3, max_age=5.0)
    ids = [tracker.update(KEY, [(100 + 6 * i, 80 + 3 * i, 90, 110)], t=i * 0.5)[0] for i in range(10)]
    assert len(set(ids)) == 1


def test_two_faces_keep_their_ids_whatever_the_detection_order():
    tracker = Tracker()
    a, b = (50, 50, 80, 100), (400, 60, 80, 100)
    first = tracker.update(KEY, [a, b], 0.0)
    second = tracker.update(KEY, [(b[0] + 5, *b[1:]), (a[0] + 5, *a[1:])], 0.5)
    assert first[0] != first[1]
    assert second == [first[1], first[0]]


def test_a_short_loss_keeps_the_id_and_a_long_one_does_not():
    tracker = Tracker(max_age=3.0)
    box = (200, 100, 90, 120)
    sid = tracker.update(KEY, [box], 0.0)[0]
    assert tracker.update(KEY, [], 1.0) == []
    assert tracker.update(KEY, [box], 2.5) == [sid]  # back after 2.5 s: same student
    assert tracker.update(KEY, [], 3.0) == []
    assert tracker.update(KEY, [box], 7.0) != [sid]  # 4.5 s unseen: forgotten, new id


def test_streams_are_separate_and_reset_starts_over():
    tracker = Tracker()
    box = (10, 10, 50, 50)
    assert tracker.update(KEY, [box, (300, 10, 50, 50)], 0.0) == [1, 2]
    assert tracker.update(("s", "cam1"), [box], 0.0) == [1]
    tracker.reset(KEY)
    assert tracker.update(KEY, [(300, 10, 50, 50)], 1.0) == [1]


def test_a_jump_larger_than_the_overlap_is_still_followed_when_unambiguous():
    tracker = Tracker(min_iou=0.3, max_centre_distance=0.5)
    sid = tracker.update(KEY, [(100, 100, 100, 100)], 0.0)[0]
    assert tracker.update(KEY, [(140, 110, 100, 100)], 0.5) == [sid]  # IoU 0.3 edge, centre close
    assert tracker.update(KEY, [(400, 300, 100, 100)], 1.0) != [sid]  # far away: someone else


def test_new_students_are_numbered_in_reading_order():
    from services.facedetect.tracker import Tracker

    # A 2x2 class whose faces the detector listed by score, not by seat; tops drift a little.
    boxes = [(330, 250, 80, 100), (10, 12, 80, 100), (12, 245, 80, 100), (335, 8, 80, 100)]
    ids = Tracker().update(("s", "cam0"), boxes, 0.0)
    assert ids == [4, 1, 3, 2]
