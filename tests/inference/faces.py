"""Real faces for the baseline's tests: the astronaut, and the astronaut with her head turned.

A turned head is synthesised in 3D by tools/turned_face.py (the sample video's
students use it too): the face mesh of the frontal crop is rotated about the face's centre
and the image is warped to match.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from tools.turned_face import turn_head

MESH_SIZE = 192


@functools.lru_cache(maxsize=1)
def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@functools.lru_cache(maxsize=1)
def astronaut_crop(size: int = 224) -> np.ndarray:
    from shared.vision.detectors import DnnDetector, crop_face

    frame = astronaut_bgr()
    found = DnnDetector().detect(frame)
    assert found, "res10 should find the astronaut's face"
    return crop_face(frame, found[0].box, size)


@functools.lru_cache(maxsize=4)
def face_crop(size: int) -> np.ndarray:
    """The astronaut's face as facedetect's crop of `size` pixels would carry it."""
    return cv2.resize(astronaut_crop(), (size, size), interpolation=cv2.INTER_AREA)


def turned(crop: np.ndarray, points: np.ndarray, yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> np.ndarray:
    """`crop` (MESH_SIZE square) with the head rotated; `points` = its (468, 3) mesh."""
    return turn_head(crop, points, yaw_deg, pitch_deg)
