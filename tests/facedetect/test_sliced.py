"""Small faces in a large frame are found with no grid seen: overlapping slices at the detector's
own scale (shared/vision/sliced.py), through the facedetect service on real ZeroMQ sockets, real faces."""

from __future__ import annotations

import numpy as np
import pytest

from services.facedetect.gallery import find_tiles
from services.facedetect.service import SLICED_FRAMES
from shared.vision.detectors import make_detector
from tests.support.gallery import SIZE, run_facedetect
from tests.support.metrics import counter
from tools.footage import carphone_frames, widen
from tools.gallery_video import _faces, everyone, render, tiles

pytestmark = pytest.mark.timeout(300)


def _in_tiles(faces: list[dict]) -> set[int]:
    grid = tiles(9, SIZE, gap=0)
    found = set()
    for f in faces:
        x, y, w, h = f["box"]
        found.update(i for i, (tx, ty, tw, th) in enumerate(grid)
                     if tx <= x + w / 2 < tx + tw and ty <= y + h / 2 < ty + th)
    return found


@pytest.mark.parametrize("gallery", ["auto", "off"])
def test_a_gallery_whose_tiles_touch_has_every_face_found_in_slices(gallery):
    frame = render(everyone(3), 0.0, SIZE, _faces(), touching=True)
    assert find_tiles(frame) == []  # no background between the tiles: no grid to search by
    assert len(make_detector("blazeface").detect(frame)) <= 2  # the whole frame's pass alone misses most
    before = counter(SLICED_FRAMES, "facedetect")
    (msg,) = run_facedetect([frame], gallery=gallery)
    assert _in_tiles(msg.header.faces) == set(range(9)), msg.header.faces
    assert len(msg.header.faces) == 9  # one box a face across the slices that overlap
    assert counter(SLICED_FRAMES, "facedetect") - before == 1


def test_slices_that_add_nothing_rest_and_a_large_face_is_never_sliced():
    # One person at a 16:9 webcam, face about 270 px of 1280: the pass finds it, no slices. The same
    # person smaller in a 1920x1080 frame (a fifth of its width): sliced once, nothing more found,
    # then not again for SLICE_RECHECK_SECONDS.
    person = widen(carphone_frames()[0], (1280, 720))
    small = widen(carphone_frames()[0], (640, 360))
    far = np.full((1080, 1920, 3), 128, np.uint8)
    far[360:720, 640:1280] = small
    before = counter(SLICED_FRAMES, "facedetect")
    got = run_facedetect([person, far, far, far], detect_every=1)
    assert [len(m.header.faces) for m in got] == [1, 1, 1, 1]
    assert counter(SLICED_FRAMES, "facedetect") - before == 1
