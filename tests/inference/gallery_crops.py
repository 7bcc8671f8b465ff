"""The face crops facedetect cuts from a 7x7 (or n x n) 1920x1080 call gallery of real faces.

The gallery is tools/gallery_video.py's (scikit-image's lfw_subset faces, everyone facing the
camera); each face is cropped around its known picture as facedetect crops a detection
(shared/vision/detectors.py's crop_face, CROP_SIZE 224), so the inference tests and measurements
get the crops of a full gallery frame without running a detector.
"""

from __future__ import annotations

import functools

import numpy as np

from shared.vision.detectors import crop_face
from tools.gallery_video import GAP, _faces, everyone, layout_at, render

CROP_SIZE = 224


@functools.lru_cache(maxsize=4)
def gallery_crops(grid: int = 7, size: int = CROP_SIZE) -> np.ndarray:
    """(grid * grid, size, size, 3) uint8 BGR crops of one gallery frame, row by row."""
    people = everyone(grid)
    frame = render(people, 0.0, (1920, 1080), _faces())
    crops = []
    for _, (x, y, w, h) in layout_at(people, 0.0, GAP):
        side = int(h * 0.72)  # render()'s face picture, centred in its tile
        box = (x + (w - side) // 2, y + (h - side) // 2, side, side)
        crops.append(crop_face(frame, box, size))
    return np.stack(crops)
