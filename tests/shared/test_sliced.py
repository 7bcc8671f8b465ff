"""Sliced search's geometry and merging (shared/vision/sliced.py); the search itself on real faces is in
tests/facedetect/test_sliced.py."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.vision.sliced import slice_boxes, tidy


@dataclass(frozen=True)
class Det:
    box: tuple[int, int, int, int]
    confidence: float


def test_slices_cover_the_frame_with_half_a_slice_of_overlap():
    boxes = slice_boxes(1920, 1080, 640)
    covered = np.zeros((1080, 1920), bool)
    for x, y, w, h in boxes:
        assert (w, h) == (640, 640) and x + w <= 1920 and y + h <= 1080
        covered[y:y + h, x:x + w] = True
    assert covered.all()
    xs = sorted({b[0] for b in boxes})
    assert all(b - a <= 320 for a, b in zip(xs, xs[1:], strict=False))  # any 320 px face fits whole in one
    assert slice_boxes(640, 480, 640) == [(0, 0, 640, 480)]


def test_one_box_a_face_a_head_and_shoulders_box_and_a_chin_beside_the_face_go():
    face = Det((850, 113, 107, 108), 0.62)
    around = Det((766, 0, 361, 342), 0.64)  # held the face whole, more confident than it (carphone gallery)
    chin = Det((877, 163, 107, 108), 0.37)  # half a face lower
    neighbour = Det((1000, 120, 100, 100), 0.5)  # another person, side by side
    assert tidy([around, face, chin, neighbour]) == [face, neighbour]
    # Two faces that touch stay two; the same face from two slices is one, the more confident.
    same = Det((852, 115, 105, 105), 0.9)
    assert tidy([face, same, neighbour]) == [same, neighbour]
