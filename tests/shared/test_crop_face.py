"""crop_face pads only its own crop where it leaves the frame (not the whole frame, as it did): the
crops stay bit for bit what they were, for faces found in real frames and for boxes inside,
across every edge and corner, larger than the frame and wholly outside it. Training's crops, the
service's and the benchmark's all come from it, so not one pixel may move."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from bench.workload import make_faces_video
from shared.vision.detectors import DnnDetector, crop_face, make_detector
from tools.gallery_video import _faces, everyone, render

pytestmark = pytest.mark.timeout(300)


def crop_face_padding_the_frame(frame: np.ndarray, box: tuple[int, int, int, int], size: int,
                                margin: float = 0.25) -> np.ndarray:
    """crop_face as it was: the whole frame padded when the crop runs off its edge (the reference)."""
    x, y, w, h = box
    side = int(max(w, h) * (1 + 2 * margin))
    cx, cy = x + w // 2, y + h // 2
    left, top = cx - side // 2, cy - side // 2
    fh, fw = frame.shape[:2]
    pad = max(0, -left, -top, left + side - fw, top + side - fh)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        left, top = left + pad, top + pad
    crop = frame[top:top + side, left:left + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> dict[str, np.ndarray]:
    """Real faces: the astronaut (and in grey), a 640x480 webcam frame of 8 (bench/workload.py),
    and a 1920x1080 5x5 call (tools/gallery_video.py) as its JPEG recording gives it back."""
    from skimage import data

    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    video = cv2.VideoCapture(str(make_faces_video(tmp_path_factory.mktemp("crop") / "faces8.avi", 8, 2)))
    ok, room = video.read()
    video.release()
    assert ok
    call = render(everyone(5), 0.0, (1920, 1080), _faces())
    call = cv2.imdecode(cv2.imencode(".jpg", call, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR)
    return {"astronaut": astronaut, "astronaut grey": cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY),
            "room of 8": room, "5x5 call": call}


def edge_boxes(width: int, height: int, large: bool) -> list[tuple[int, int, int, int]]:
    """Boxes of a pixel up to 150 px centred inside, on, just past and far past every edge and
    corner, and wholly outside each side; boxes of no size; `large`: boxes of the frame's size and
    twice it, centred, at the corners and past them."""
    boxes = [(0, 0, 0, 0), (width // 2, height // 2, 0, 0), (width // 2, height // 2, 1, 1), (-5, -5, 0, 0)]
    for w, h in ((1, 1), (7, 5), (40, 40), (61, 90), (150, 120)):
        xs = (-2 * w - 50, -w, -w // 2, -1, 0, 1, width // 3, width - w - 1, width - w, width - w // 2, width - 1,
              width, width + 50)
        ys = (-2 * h - 50, -h, -h // 2, -1, 0, 1, height // 3, height - h - 1, height - h, height - h // 2,
              height - 1, height, height + 50)
        boxes += [(x, y, w, h) for x, y in itertools.product(xs, ys)]
    for w, h in ((width, height), (2 * width, 2 * height)) if large else ():
        xs = (-w, -w // 2, -3, 0, (width - w) // 2, width - w, width - w // 2, width)
        ys = (-h, -h // 2, -3, 0, (height - h) // 2, height - h, height - h // 2, height)
        boxes += [(x, y, w, h) for x, y in itertools.product(xs, ys)]
    return boxes


def same(frame: np.ndarray, box: tuple[int, int, int, int], size: int, margin: float) -> str | None:
    """None when crop_face gives the reference's crop bit for bit (or fails as it does), else why not."""
    try:
        expected = crop_face_padding_the_frame(frame, box, size, margin)
    except cv2.error:
        try:
            crop_face(frame, box, size, margin)
        except cv2.error:
            return None
        return "the reference fails, crop_face does not"
    got = crop_face(frame, box, size, margin)
    if got.dtype != expected.dtype or got.shape != expected.shape:
        return f"{got.dtype}{got.shape} instead of {expected.dtype}{expected.shape}"
    return None if np.array_equal(got, expected) else f"{np.count_nonzero(got != expected)} values differ"


def test_found_faces_crop_as_before(frames):
    # As facedetect finds them: BlazeFace on a camera's frame, res10 on a call's whole frame.
    detector, call_detector = make_detector("auto"), DnnDetector()
    found = 0
    for name, frame in frames.items():
        image = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        boxes = [d.box for d in (call_detector if name == "5x5 call" else detector).detect(image)]
        found += len(boxes)
        for box, size, margin in itertools.product(boxes, (224, 192, 64), (0.25, 0.35, 0.0)):
            assert same(frame, box, size, margin) is None, (name, box, size, margin, same(frame, box, size, margin))
    assert found >= 1 + 1 + 8 + 20  # faces found in every frame, 20 of the call's 24 at least


def test_boxes_at_every_edge_corner_and_beyond_crop_as_before(frames):
    padded = outside = 0
    for name, frame in frames.items():
        height, width = frame.shape[:2]
        # (Twice a 1920x1080 frame's size, the old crop padded 10000x9000 px frames: seconds each.)
        small = width < 1000
        for box in edge_boxes(width, height, large=small):
            x, y, w, h = box
            side = int(max(w, h) * 1.5)
            left, top = x + w // 2 - side // 2, y + h // 2 - side // 2
            padded += left < 0 or top < 0 or left + side > width or top + side > height
            outside += side > 0 and (left >= width or top >= height or left + side <= 0 or top + side <= 0)
            for size, margin in ((224, 0.25), (31, 0.25), (64, 0.4)) if small else ((224, 0.25),):
                why = same(frame, box, size, margin)
                assert why is None, (name, box, size, margin, why)
    # The edge cases were all there: crops off the frame, some wholly beyond it.
    assert padded > 1000 and outside > 100, (padded, outside)
