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


def test_a_new_face_is_tentative_until_seen_for_min_seconds_then_a_student():
    tracker = Tracker(min_seconds=1.0)
    box = (100, 100, 90, 110)
    ids = [tracker.update(KEY, [box], t)[0] for t in (0.0, 0.5)]
    assert ids[0] == ids[1] < 0  # tentative: no student yet
    assert tracker.update(KEY, [box], 1.0) == [1]
    resolutions, set_aside = tracker.take_resolutions(KEY)
    assert resolutions == {ids[0]: 1} and set_aside == []


def test_a_short_lived_face_is_set_aside_and_uses_up_no_student_id():
    tracker = Tracker(min_seconds=1.0)
    hand, face = (300, 100, 90, 110), (50, 100, 90, 110)
    flash = tracker.update(KEY, [hand], 0.0)[0]
    tracker.update(KEY, [hand], 0.5)
    tracker.update(KEY, [], 1.0)
    assert tracker.update(KEY, [face], 1.5)[0] < 0
    assert tracker.take_resolutions(KEY) == ({}, [])  # the hand may still come back
    assert tracker.update(KEY, [face], 2.0)[0] < 0  # the hand is gone for longer than it had to live
    resolutions, set_aside = tracker.take_resolutions(KEY)
    assert resolutions == {flash: None}
    assert [(s.reason, s.seconds) for s in set_aside] == [("short_lived", 0.5)]
    assert tracker.update(KEY, [face], 2.5) == [1]  # the next real student is still number 1


def test_finish_sets_aside_what_is_still_tentative():
    tracker = Tracker(min_seconds=1.0)
    sid = tracker.update(KEY, [(10, 10, 50, 50)], 0.0)[0]
    tracker.finish(KEY)
    resolutions, set_aside = tracker.take_resolutions(KEY)
    assert resolutions == {sid: None} and set_aside[0].reason == "short_lived"


def _look(seed: int, face_score: float = 1.0):
    """A look vector like appearance.py's (unit, non-negative): one per person seed."""
    import numpy as np  # noqa: PLC0415

    from services.facedetect.appearance import Look  # noqa: PLC0415

    v = np.random.default_rng(seed).random(944).astype(np.float32) ** 4
    return Look(v / np.linalg.norm(v), face_score)


def test_a_face_back_elsewhere_with_the_same_look_is_the_same_student_and_another_look_is_not():
    tracker = Tracker(max_age=10.0, reid_seconds=10.0)
    left, right = (40, 100, 90, 110), (450, 100, 90, 110)
    a, b = _look(1), _look(2)
    assert tracker.update(KEY, [left], 0.0, lambda due: [a for _ in due]) == [1]
    assert tracker.update(KEY, [], 1.0) == []
    # Back on the other side 3 s later: the place says nothing, the look says who.
    assert tracker.update(KEY, [right], 4.0, lambda due: [a for _ in due]) == [1]
    assert tracker.update(KEY, [], 5.0) == []
    # Someone else in that very place: a new student, though the place would have said student 1.
    assert tracker.update(KEY, [right], 6.0, lambda due: [b for _ in due]) == [2]


def test_what_the_face_mesh_does_not_take_for_a_face_is_set_aside_at_once_and_counted_once():
    tracker = Tracker(min_seconds=0.0)
    face, hand = (40, 100, 90, 110), (300, 100, 90, 110)
    looks = {0: _look(1), 1: _look(3, face_score=0.05)}
    ids = tracker.update(KEY, [face, hand], 0.0, lambda due: [looks[i] for i in due])
    assert ids[0] == 1 and ids[1] < 0
    assert tracker.update(KEY, [face], 0.5) == [1]
    flicker = tracker.update(KEY, [face, hand], 1.0, lambda due: [looks[i] for i in due])
    assert flicker == ids  # the same hand, still set aside
    resolutions, set_aside = tracker.take_resolutions(KEY)
    assert resolutions == {ids[1]: None} and [s.reason for s in set_aside] == ["not_a_face"]


def test_a_face_that_comes_back_from_behind_a_hand_looking_like_nobody_is_still_the_student_it_was():
    # The first look as the hand goes is the hand's as much as the face's: matched with nobody, the face
    # became a new tentative one; the looks it takes while tentative are the student's, and decide.
    tracker = Tracker(min_seconds=1.0, max_age=10.0, reid_seconds=10.0)
    place = (400, 150, 200, 220)
    own, half_covered = _look(1), _look(2)
    assert tracker.update(KEY, [place], 0.0, lambda due: [own for _ in due]) == [-1]
    assert tracker.update(KEY, [place], 1.0, lambda due: [own for _ in due]) == [1]
    assert tracker.update(KEY, [], 1.5) == []  # the hand over the face
    [back] = tracker.update(KEY, [place], 2.0, lambda due: [half_covered for _ in due])
    assert back < 0  # tentative: its look said someone else in the student's place
    assert tracker.update(KEY, [place], 2.5, lambda due: [own for _ in due]) == [back]
    assert tracker.update(KEY, [place], 3.0, lambda due: [own for _ in due]) == [1]
    resolutions, set_aside = tracker.take_resolutions(KEY)
    assert resolutions == {-1: 1, back: 1} and set_aside == []


def test_a_newcomer_in_a_lost_students_place_whose_looks_stay_another_persons_is_a_new_student():
    tracker = Tracker(min_seconds=1.0, max_age=10.0, reid_seconds=10.0)
    place = (400, 150, 200, 220)
    assert tracker.update(KEY, [place], 0.0, lambda due: [_look(1) for _ in due]) == [-1]
    assert tracker.update(KEY, [place], 1.0, lambda due: [_look(1) for _ in due]) == [1]
    assert tracker.update(KEY, [], 1.5) == []
    other = _look(2)
    [newcomer] = tracker.update(KEY, [place], 2.0, lambda due: [other for _ in due])
    assert tracker.update(KEY, [place], 2.5, lambda due: [other for _ in due]) == [newcomer]
    assert tracker.update(KEY, [place], 3.0, lambda due: [other for _ in due]) == [2]
