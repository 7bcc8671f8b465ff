"""Real faces for the baseline's tests: the astronaut, and the astronaut with her head turned.

A turned head is synthesised in 3D: the face mesh of the frontal crop is rotated about the
face's centre and the image is warped so each mesh point lands where the rotated point
projects (linear interpolation between mesh points, crop corners held still). It is not a
photograph of a turned head, but it moves the nose, eyes and chin as a turn does.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from scipy.interpolate import griddata

MESH_SIZE = 192


@functools.lru_cache(maxsize=1)
def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@functools.lru_cache(maxsize=1)
def astronaut_crop(size: int = 224) -> np.ndarray:
    from services.facedetect.detectors import DnnDetector, crop_face

    frame = astronaut_bgr()
    found = DnnDetector().detect(frame)
    assert found, "res10 should find the astronaut's face"
    return crop_face(frame, found[0].box, size)


def turned(crop: np.ndarray, points: np.ndarray, yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> np.ndarray:
    """`crop` (MESH_SIZE square) with the head rotated; `points` = its (468, 3) mesh."""
    centre = points.mean(axis=0)
    a, b = math.radians(yaw_deg), math.radians(pitch_deg)
    about_y = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    about_x = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    moved = (points - centre) @ (about_x @ about_y).T + centre
    edge = MESH_SIZE - 1
    anchors = np.array([[0, 0], [edge, 0], [0, edge], [edge, edge], [edge / 2, 0], [0, edge / 2],
                        [edge, edge / 2], [edge / 2, edge]], np.float64)
    dst = np.vstack([moved[:, :2], anchors])
    src = np.vstack([points[:, :2], anchors])
    gy, gx = np.mgrid[0:MESH_SIZE, 0:MESH_SIZE]
    # for every output pixel, where to read in the source: interpolate dst -> src
    map_x = griddata(dst, src[:, 0], (gx, gy), method="linear").astype(np.float32)
    map_y = griddata(dst, src[:, 1], (gx, gy), method="linear").astype(np.float32)
    return cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
