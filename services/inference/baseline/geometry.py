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

The perspective fit is ambiguous in yaw's sign and swells it when the face's pixels are not
square (a 16:9 frame squeezed into 4:3 read a frontal face as turned +-25 deg, flipping frame
to frame): so yaw also comes from the face's symmetry, which neither has: the nose tip's offset from
the midpoint of a symmetric pair of points in half the pair's span, along the eye line (a
ratio of two horizontal lengths: unchanged by any horizontal scale). For a head turned by
yaw, that ratio is (depth of the pair behind the nose / its half span) x tan(yaw): 0.6 x
tan(yaw) for the eye corners, 0.83 x tan(yaw) for the mouth corners; the two angles are
averaged. Yaw takes the symmetric estimate's sign and the smaller of the two magnitudes:
they agree within a few degrees on a real turn, and a squeezed face reads frontal.

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
# (left, right, depth behind the nose tip / half span) on the canonical face: the eye corners sit
# above the nose and the mouth corners below, so a nod moves their depths in opposite directions
# and their average keeps yaw's reading (either alone misreads a head turned 25 deg and lowered 40).
SYMMETRIC_PAIRS = ((33, 263, 135.0 / 225.0), (61, 291, 125.0 / 150.0))
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
    yaw = _least_turn(math.degrees(math.atan2(fx, -fz)), symmetric_yaw(points))
    pitch = math.degrees(math.atan2(fy, math.hypot(fx, fz)))
    roll = math.degrees(math.atan2(rot[1, 0], rot[0, 0]))
    return yaw, pitch, roll


def symmetric_yaw(points: np.ndarray) -> float | None:
    """Yaw (deg, + = facing image right) from the nose tip's offset between the eye corners and
    between the mouth corners, measured along the eye line, averaged."""
    outer_left, outer_right, nose = (np.asarray(points[i, :2], np.float64) for i in (33, 263, 1))
    span = outer_right - outer_left
    length = float(np.linalg.norm(span))
    if length < 1e-6:
        return None
    along = span / length
    angles = []
    for left, right, depth_ratio in SYMMETRIC_PAIRS:
        a, b = (float((np.asarray(points[i, :2], np.float64) - nose) @ along) for i in (left, right))
        half = (b - a) / 2
        if half <= 1e-6:
            return None
        nose_offset = -(a + b) / 2  # the nose tip from the pair's midpoint, + = towards the image right
        angles.append(math.degrees(math.atan2(nose_offset / half, depth_ratio)))
    return float(np.mean(angles))


def _least_turn(fitted: float, symmetric: float | None) -> float:
    if symmetric is None:
        return fitted
    return math.copysign(min(abs(fitted), abs(symmetric)), symmetric)


def eye_openness(points: np.ndarray) -> float:
    ratios = []
    for p1, p2, p3, p4, p5, p6 in EYES:
        p = points[:, :2]
        width = np.linalg.norm(p[p1] - p[p4])
        if width < 1e-6:
            continue
        ratios.append((np.linalg.norm(p[p2] - p[p6]) + np.linalg.norm(p[p3] - p[p5])) / (2 * width))
    return float(np.mean(ratios)) if ratios else 0.0
