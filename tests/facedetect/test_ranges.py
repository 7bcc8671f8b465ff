"""Short-range BlazeFace alone while the faces are near (services/facedetect/ranges.py), on real
footage: the carphone clip (a real man talking, tools/footage.py) as a 640x480 webcam, the same
clip far from the camera, and skimage's astronaut as a small face coming in at the back. The
detection with the ranges must find the faces both models find."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from services.facedetect.ranges import FAR_RECHECK_SECONDS, Ranges
from services.facedetect.tracker import iou
from shared.vision.detectors import Detection, make_detector, with_slices
from tools.footage import carphone_4_3

FPS = 2.0
KEY = ("ranges", "cam")


@pytest.fixture(scope="module")
def detector():
    return with_slices(make_detector("blazeface"))


def _same_faces(a: list[Detection], b: list[Detection]) -> bool:
    return len(a) == len(b) and all(max((iou(x.box, y.box) for y in b), default=0.0) >= 0.5 for x in a)


def _far(frame: np.ndarray, scale: float = 0.4) -> np.ndarray:
    """The frame shrunk into the middle of a grey one of the same size: a person far from the camera."""
    small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    out = np.full_like(frame, 90)
    y, x = (frame.shape[0] - small.shape[0]) // 2, (frame.shape[1] - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


def _with_small_face(frame: np.ndarray) -> np.ndarray:
    """A second, small face (the astronaut, about 60 px) at the frame's top left corner."""
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[20:260, 130:370]
    out = frame.copy()
    out[:120, :120] = cv2.resize(astronaut, (120, 120), interpolation=cv2.INTER_AREA)
    return out


def test_a_near_real_face_is_found_by_short_range_alone_and_where_both_models_find_it(detector):
    ranges, ran = Ranges(), []
    for k, frame in enumerate(carphone_4_3(6.0, FPS)):
        found = ranges.detect(KEY, detector, frame, k / FPS)
        ran.append(ranges.ran)
        assert _same_faces(found, detector.detect(frame)), f"frame {k}: {found}"
    assert len(ran) == 12 and ran[0] == "both"
    # Both models at least every FAR_RECHECK_SECONDS, short-range alone in between.
    assert ran.count("short") >= len(ran) - 1 - len(ran) / (FAR_RECHECK_SECONDS * FPS) - 1
    assert "both" in ran[1:]


def test_a_far_real_face_keeps_both_models(detector):
    ranges = Ranges()
    for k, frame in enumerate(carphone_4_3(3.0, FPS)):
        far = _far(frame)
        found = ranges.detect(KEY, detector, far, k / FPS)
        assert ranges.ran == "both"
        assert _same_faces(found, detector.detect(far)) and len(found) == 1


def test_a_near_face_that_moves_away_is_found_on_that_frame_by_both_models(detector):
    ranges = Ranges()
    frames = carphone_4_3(2.0, FPS)
    for k, frame in enumerate(frames[:3]):
        ranges.detect(KEY, detector, frame, k / FPS)
    assert ranges.ran == "short"
    away = _far(frames[3], 0.3)
    found = ranges.detect(KEY, detector, away, 3 / FPS)
    assert ranges.ran == "short+both" and len(found) == 1


def test_a_small_face_coming_in_beside_a_near_one_is_found_within_the_recheck(detector):
    ranges = Ranges()
    frames = carphone_4_3(2.0 + FAR_RECHECK_SECONDS + 1.0, FPS)
    for k, frame in enumerate(frames[:2]):
        assert len(ranges.detect(KEY, detector, frame, k / FPS)) == 1
    assert ranges.ran == "short"
    # The newcomer is there from the third frame; both models find him, short-range alone does not
    # (he is small): the next time both models run (within FAR_RECHECK_SECONDS) he is found, and kept.
    counts = []
    for k, frame in enumerate(frames[2:], start=2):
        with_him = _with_small_face(frame)
        assert len(detector.detect(with_him)) == 2
        counts.append(len(ranges.detect(KEY, detector, with_him, k / FPS)))
    assert counts[0] == 1, "short-range alone found the small newcomer: the test shows nothing"
    found_after = counts.index(2) / FPS
    assert found_after <= FAR_RECHECK_SECONDS and all(n == 2 for n in counts[counts.index(2):])


def test_another_stream_and_a_forgotten_one_start_with_both_models(detector):
    ranges = Ranges()
    frame = carphone_4_3(0.5, FPS)[0]
    ranges.detect(KEY, detector, frame, 0.0)
    ranges.detect(KEY, detector, frame, 0.5)
    assert ranges.ran == "short"
    ranges.detect(("ranges", "other"), detector, frame, 0.5)
    assert ranges.ran == "both"
    ranges.forget(KEY)
    ranges.detect(KEY, detector, frame, 1.0)
    assert ranges.ran == "both"
    # Time going back (a new recording on the same stream id): both models again.
    ranges.detect(KEY, detector, frame, 1.5)
    ranges.detect(KEY, detector, frame, 0.0)
    assert ranges.ran == "both"
