"""A real face and the overlap of two boxes, for the tests of the face detectors and of facedetect."""

from __future__ import annotations

import cv2
import numpy as np
from skimage import data


def astronaut() -> np.ndarray:
    """scikit-image's astronaut photo (512x512, one frontal face) as a BGR frame, a fresh copy each call."""
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)
