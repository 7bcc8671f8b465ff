"""A real face with its head turned: the face mesh rotated in 3D, the image warped to match.

Used by the sample video (students who look away or down at a phone) and by the baseline's
tests. The MediaPipe face mesh of a frontal face gives 468 points with depth; they are
rotated about the face's centre and the image is warped so each mesh point lands where its
rotated point projects (linear interpolation between mesh points, the image border held
still). It is not a photograph of a turned head, but it moves the nose, eyes and chin as a
turn does, so a detector and a head-pose estimator both see a turned face.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

HEAD_RING_POINTS = 24  # points around the face that turn with the head (hair, ears)
HEAD_RING_SCALE = 1.5  # ring size relative to the face mesh's extent


def rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """3x3 rotation: yaw about the image's vertical axis, then pitch about its horizontal one.

    Signs follow the baseline's head pose (x right, y down, z away from the camera): with the
    rotated points projected straight on the image, yaw + turns the face towards image left
    (the baseline reads it as negative yaw) and pitch + tilts it down.
    """
    a, b = math.radians(yaw_deg), math.radians(pitch_deg)
    about_y = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    about_x = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return about_x @ about_y


def turn_head(image: np.ndarray, points: np.ndarray, yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> np.ndarray:
    """`image` (any h x w) with the head rotated; `points` = its (n, 3) mesh in the image's pixels.

    The mesh is triangulated, each triangle is moved to where its rotated corners project, and
    the triangles are painted far to near, so a turned nose hides the cheek behind it instead of
    folding the picture. A ring around the face (the hair, the ears) turns with the head; the
    image border stays still, so the result pastes back into a larger picture without a seam.
    """
    if not yaw_deg and not pitch_deg:
        return image.copy()
    h, w = image.shape[:2]
    src = _with_head_and_border(np.asarray(points, np.float64), w, h)
    moving = len(src) - len(_border(w, h))
    centre = src[:len(points)].mean(axis=0)
    dst = src.copy()
    dst[:moving] = (src[:moving] - centre) @ rotation(yaw_deg, pitch_deg).T + centre
    triangles = _triangles(src[:, :2])
    # Triangles seen edge-on after the turn cover no area and have no inverse map: leave them out.
    a, b, c = (dst[triangles[:, k], :2] for k in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    triangles = triangles[np.abs(cross) > 1e-3]
    # Paint far to near (z grows away from the camera): each pixel keeps the nearest triangle.
    order = np.argsort(-dst[triangles, 2].mean(axis=1), kind="stable")
    owner = np.full((h, w), -1, np.int32)
    for t in order:
        cv2.fillConvexPoly(owner, np.round(dst[triangles[t], :2]).astype(np.int32), int(t))
    # Per triangle, the affine map from output pixels back to source pixels.
    back = np.stack([cv2.getAffineTransform(dst[tri, :2].astype(np.float32), src[tri, :2].astype(np.float32))
                     for tri in triangles])
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
    painted = owner >= 0
    maps = np.stack([gx, gy], axis=-1)  # pixels no triangle covers read in place
    m = back[owner[painted]]
    px, py = gx[painted], gy[painted]
    maps[painted, 0] = m[:, 0, 0] * px + m[:, 0, 1] * py + m[:, 0, 2]
    maps[painted, 1] = m[:, 1, 0] * px + m[:, 1, 1] * py + m[:, 1, 2]
    maps = maps.astype(np.float32)
    return cv2.remap(image, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _border(w: int, h: int) -> np.ndarray:
    right, bottom = w - 1, h - 1
    xs, ys = np.linspace(0, right, 5), np.linspace(0, bottom, 5)
    ring = [(x, 0) for x in xs] + [(x, bottom) for x in xs] + [(0, y) for y in ys[1:-1]] + \
        [(right, y) for y in ys[1:-1]]
    return np.array(ring, np.float64)


def _with_head_and_border(points: np.ndarray, w: int, h: int) -> np.ndarray:
    """The mesh, a ring of head points around it (behind the face's edge), then the still border."""
    centre = points.mean(axis=0)
    half = (points[:, :2].max(axis=0) - points[:, :2].min(axis=0)) / 2
    angles = np.linspace(0, 2 * np.pi, HEAD_RING_POINTS, endpoint=False)
    # The sides of a head are about as deep behind the face's centre as the face is half wide.
    ring = np.column_stack([centre[0] + HEAD_RING_SCALE * half[0] * np.cos(angles),
                            centre[1] + HEAD_RING_SCALE * half[1] * np.sin(angles),
                            np.full(HEAD_RING_POINTS, centre[2] + half[0])])
    inside = (ring[:, 0] > 0) & (ring[:, 0] < w - 1) & (ring[:, 1] > 0) & (ring[:, 1] < h - 1)
    border = _border(w, h)
    far = points[:, 2].max() + 2 * half[0]  # the border never covers the face
    return np.vstack([points, ring[inside], np.column_stack([border, np.full(len(border), far)])])


def _triangles(xy: np.ndarray) -> np.ndarray:
    from scipy.spatial import Delaunay  # scipy comes with scikit-image, which the callers use

    return Delaunay(xy).simplices


def mesh_points(image: np.ndarray, box: tuple[int, int, int, int], models: Path | None = None) -> np.ndarray:
    """The face mesh of the face in `box` (x, y, w, h, square) of `image`, in `image` pixels.

    `box` should frame the face as facedetect crops it (detector box plus a quarter each side),
    the framing the mesh was trained on. Needs face_landmark.tflite (`engagement fetch-models`).
    """
    from shared.vision.face_mesh import MESH_SIZE, FaceMesh  # noqa: PLC0415

    x, y, w, h = box
    crop = image[y:y + h, x:x + w]
    points = FaceMesh(models).run(crop[None]).points[0].astype(np.float64)
    scale = np.array([w / MESH_SIZE, h / MESH_SIZE, w / MESH_SIZE])
    return points * scale + np.array([x, y, 0.0])
