"""What a face looks like, as a vector: the tracker tells people apart by it after a loss.

No face-recognition network is reachable offline here (the PyPI wheels that name one download
their weights at run time, or need dlib), so the look is built from what the box already has:
MediaPipe's face mesh (shared/vision/face_mesh.py, ~3 ms a face) finds the eyes in the face's crop;
the face is rotated and scaled so the eyes sit at fixed places (tilt and distance from the
camera drop out), and its texture is described by uniform local binary patterns in a 4x4 grid
of cells, the classic face descriptor (Ahonen et al., 2006), robust to lighting changes.
Measured on real faces (skimage's astronaut at 4 sizes, 30 lfw_subset faces, 8 moments of a
real person talking and turning in carphone_pristine.mp4), of the variants tried (8x8 and 3x3
grids, 48 and 96 px faces, blur, all 256 patterns, the mesh's 3D shape after Procrustes
alignment, raw pixel correlation, colour histograms), this one let the fewest pairs of
different people come closer than the same person's farthest pair (8 %).

The mesh's face score comes with it: a hand, a sleeve or a poster edge that the detector took
for a face scores low, and the tracker never makes a student of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shared.vision.detectors import crop_face
from shared.vision.face_mesh import MESH_SIZE, FaceMesh

ALIGNED = 64  # side of the aligned face the texture is read from
GRID = 4
# Landmarks (MediaPipe's face mesh numbering): the outer eye corners.
LEFT_EYE, RIGHT_EYE = 33, 263
# Where the aligned face puts them (fractions of ALIGNED).
EYE_Y, EYE_X0, EYE_X1 = 0.38, 0.22, 0.78


def _uniform_patterns() -> np.ndarray:
    """Code -> bin: the 58 patterns with at most two 0/1 transitions around the circle each get
    a bin (edges, corners, spots: most of a face), every other pattern shares the last one."""
    bins = np.full(256, 58, np.uint8)
    uniform = [c for c in range(256) if sum(((c >> i) & 1) != ((c >> ((i + 1) % 8)) & 1) for i in range(8)) <= 2]
    bins[uniform] = np.arange(len(uniform))
    return bins


UNIFORM = _uniform_patterns()
BINS = 59


@dataclass
class Look:
    texture: np.ndarray  # unit vector (uniform-LBP cell histograms, square-rooted)
    face_score: float  # the mesh's face presence, 0..1


def _lbp_codes(gray: np.ndarray) -> np.ndarray:
    """8-neighbour local binary pattern of every inner pixel (uint8 codes)."""
    g = gray.astype(np.int16)
    c = g[1:-1, 1:-1]
    codes = np.zeros(c.shape, np.uint8)
    for bit, (dy, dx) in enumerate(((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))):
        codes |= ((g[1 + dy:g.shape[0] - 1 + dy, 1 + dx:g.shape[1] - 1 + dx] >= c).astype(np.uint8) << bit)
    return codes


def _texture(aligned_gray: np.ndarray) -> np.ndarray:
    codes = UNIFORM[_lbp_codes(cv2.equalizeHist(aligned_gray))]
    cell = codes.shape[0] // GRID
    hists = [np.bincount(codes[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell].ravel(), minlength=BINS)
             for r in range(GRID) for c in range(GRID)]
    v = np.sqrt(np.concatenate(hists).astype(np.float32))  # Hellinger: no bin dominates
    return v / max(float(np.linalg.norm(v)), 1e-6)


def _eye_frame(points: np.ndarray) -> np.ndarray:
    """2x3 similarity transform taking the outer eye corners to the aligned face's eye places."""
    src = np.array([points[LEFT_EYE, :2], points[RIGHT_EYE, :2]], dtype=np.float32)
    dst = np.array([[EYE_X0 * ALIGNED, EYE_Y * ALIGNED], [EYE_X1 * ALIGNED, EYE_Y * ALIGNED]], dtype=np.float32)
    # A similarity is fixed by two points: add the third corner of an isosceles right triangle.
    def third(p: np.ndarray) -> np.ndarray:
        d = p[1] - p[0]
        corner: np.ndarray = p[0] + np.array([-d[1], d[0]], dtype=np.float32)
        return corner
    frame: np.ndarray = cv2.getAffineTransform(np.vstack([src, third(src)]), np.vstack([dst, third(dst)]))
    return frame


def look_of(crop: np.ndarray, points: np.ndarray, face_score: float) -> Look:
    """The look of a MESH_SIZE crop whose mesh landmarks are `points` (468, >=2)."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    aligned = cv2.warpAffine(gray, _eye_frame(points), (ALIGNED, ALIGNED), flags=cv2.INTER_AREA,
                             borderMode=cv2.BORDER_REPLICATE)
    return Look(_texture(aligned), float(face_score))


def distance(a: Look, b: Look) -> float:
    """0 for the same picture, about 0.23 between two people (the tracker's thresholds say more)."""
    return max(0.0, 1.0 - float(np.dot(a.texture, b.texture)))


class Appearance:
    """Looks of the faces in a frame (the face mesh run on each face's crop)."""

    def __init__(self, models: Path | None = None, num_threads: int | None = None) -> None:
        self.mesh = FaceMesh(models, num_threads)

    def looks(self, image: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[Look]:
        if not boxes:
            return []
        crops = np.stack([crop_face(image, box, MESH_SIZE) for box in boxes])
        found = self.mesh.run(crops)
        return [look_of(crop, pts, score) for crop, pts, score in zip(crops, found.points, found.confidence,
                                                                     strict=True)]
