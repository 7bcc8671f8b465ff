"""Head pose and eye openness from face-mesh landmarks.

Head pose: cv2.solvePnP of six mesh points against a canonical 3D face, in a frame that is
the camera's when the face looks straight into it (x to the image right, y down, z away
from the camera), millimetre-like units from the widely used generic head model:

    point                           mesh index   (x, y, z)
    nose tip                        1            (   0,    0,    0)
    chin                            152          (   0,  330,   65)
    eye outer corner, image left    33           (-225, -170,  135)
    eye outer corner, image right   263          ( 225, -170,  135)
    mouth corner, image left        61           (-150,  150,  125)
    mouth corner, image right       291          ( 150,  150,  125)

Camera: focal length = crop width, principal point = crop centre (a crop of a webcam
frame; close enough for angles). From the rotation R the face's forward direction
f = R @ (0, 0, -1) gives yaw = atan2(f_x, -f_z) (+ = facing image right) and
pitch = atan2(f_y, hypot(f_x, f_z)) (+ = facing down); roll is the eye line's tilt.

Eye openness: eye aspect ratio (Soukupova and Cech 2016) on six mesh points per eye,
(|p2-p6| + |p3-p5|) / (2 |p1-p4|), averaged over both eyes: ~0.25-0.35 open, < 0.12 shut.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

POSE_INDICES = [1, 152, 33, 263, 61, 291]
CANONICAL_FACE = np.array([
    (0.0, 0.0, 0.0),
    (0.0, 330.0, 65.0),
    (-225.0, -170.0, 135.0),
    (225.0, -170.0, 135.0),
    (-150.0, 150.0, 125.0),
    (150.0, 150.0, 125.0),
], np.float64)
# p1 (corner), p2, p3 (upper lid), p4 (other corner), p5, p6 (lower lid)
EYES = ([33, 160, 158, 133, 153, 144], [362, 385, 387, 263, 373, 380])


def head_pose(points: np.ndarray, size: float) -> tuple[float, float, float] | None:
    """(yaw, pitch, roll) in degrees for one face's (468, >=2) landmarks in a size x size crop."""
    image_points = np.ascontiguousarray(points[POSE_INDICES, :2], np.float64)
    camera = np.array([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1]], np.float64)
    ok, rvec, _ = cv2.solvePnP(CANONICAL_FACE, image_points, camera, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        return None
    rot, _ = cv2.Rodrigues(rvec)
    fx, fy, fz = -rot[:, 2]  # the face's forward direction, towards the camera when frontal
    yaw = math.degrees(math.atan2(fx, -fz))
    pitch = math.degrees(math.atan2(fy, math.hypot(fx, fz)))
    roll = math.degrees(math.atan2(rot[1, 0], rot[0, 0]))
    return yaw, pitch, roll


def eye_openness(points: np.ndarray) -> float:
    ratios = []
    for p1, p2, p3, p4, p5, p6 in EYES:
        p = points[:, :2]
        width = np.linalg.norm(p[p1] - p[p4])
        if width < 1e-6:
            continue
        ratios.append((np.linalg.norm(p[p2] - p[p6]) + np.linalg.norm(p[p3] - p[p5])) / (2 * width))
    return float(np.mean(ratios)) if ratios else 0.0
